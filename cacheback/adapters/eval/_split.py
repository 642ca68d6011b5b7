"""The fixed split of labelled data into a tuning part and a held-back part.

The guard's scorer is fitted (``scripts/train_guard.py``) and its rules are judged on the
tuning part only; ``cacheback eval --split held-back`` reports the other part. A row's
side is decided by a hash of its own texts, so it never depends on the file's order, on
``--limit`` or on a seed, and a row that occurs twice lands on the same side.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["all", "tuning", "held-back"]
SPLITS: tuple[Split, ...] = ("all", "tuning", "held-back")


def split_of(first: str, second: str) -> Split:
    """``"tuning"`` or ``"held-back"`` for the row whose two texts are given (a pair's
    first and second text; a retrieval row's origin and similar text): the first byte of
    the SHA-256 of both texts, even for tuning, odd for held-back (about half each)."""
    digest = hashlib.sha256(f"{first}\x1f{second}".encode("utf-8", "surrogatepass")).digest()
    return "held-back" if digest[0] & 1 else "tuning"


def in_split(first: str, second: str, split: Split) -> bool:
    """Whether the row belongs to ``split`` (every row belongs to ``"all"``)."""
    return split == "all" or split_of(first, second) == split
