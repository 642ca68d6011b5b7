"""The learned scorer: its features and the logistic model read on the cosine scale."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ._extract import _entry_features, _features
from ._features import _Features
from ._name_matching import _entity_present
from ._veto import bounded

#: Inputs of the learned scorer, in the order of its weights. The risk feature is 0 for a
#: clean paraphrase, whose score is then exactly its cosine. Only signals whose effect
#: has the same sign on both development sets (pairwise questions and retrieval
#: paraphrases, fitted separately) are kept: lexical overlap, added qualifiers and
#: length flip sign between them, and so do one-sided numbers and dates (a paraphrase
#: spells "two steps" out or drops a year the guard already judged), so they would not
#: generalise.
FEATURE_NAMES: tuple[str, ...] = ("cosine", "unmatched_names")
_FEATURE_CAP = 3.0


def pair_features(query: str, candidate: str, similarity: float) -> tuple[float, ...]:
    """The scorer's inputs for one pair (see :data:`FEATURE_NAMES`).

    ``unmatched_names`` counts the names (places, products, people, acronyms) that one
    text pins down and the other does not mention: one-sided, so no veto ("in Delhi,
    India" / "in India"), but less trust.
    """
    return _pair_features(_features(bounded(query)), _entry_features(bounded(candidate)), similarity)


def _pair_features(qf: _Features, cf: _Features, similarity: float) -> tuple[float, ...]:
    """:func:`pair_features` of two texts' analyses. A name the other text holds as a name
    is always present, so only the others are looked for."""
    names = 0
    if qf.entities != cf.entities:
        names = sum(1 for e in qf.entities - cf.entities if not _entity_present(e, qf, cf)) + sum(
            1 for e in cf.entities - qf.entities if not _entity_present(e, cf, qf)
        )
    return (float(similarity), min(float(names), _FEATURE_CAP))

@dataclass(frozen=True, slots=True)
class GuardModel:
    """A logistic scorer read on the cosine scale, as a penalty.

    The logistic model is ``bias + weights . features`` with the cosine first. Dividing
    the risk terms by the cosine weight gives how much cosine each unit of risk is worth;
    the score is ``cosine + min(0, risk)``, floored at ``cosine - max_shift``. Risk only
    lowers a score, so a clean pair keeps its cosine and the threshold keeps its meaning.
    """

    weights: tuple[float, ...]
    bias: float = 0.0
    max_shift: float = 0.05

    def score(self, features: Sequence[float]) -> float:
        cosine = features[0]
        slope = self.weights[0]
        if slope <= 0:
            return cosine
        risk = sum(w * x for w, x in zip(self.weights[1:], features[1:], strict=True)) / slope
        return cosine + max(-self.max_shift, min(0.0, risk))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuardModel:
        names = tuple(data["features"])
        if names != FEATURE_NAMES:
            raise ValueError(f"guard model features {names} != {FEATURE_NAMES}")
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data.get("bias", 0.0)),
            max_shift=float(data.get("max_shift", 0.05)),
        )


# The model sits in this package, where scripts/train_guard.py writes it and
# pyproject.toml ships it as package data.
_MODEL_PACKAGE = __package__ or "cacheback.guard"


@lru_cache(maxsize=1)
def shipped_model() -> GuardModel | None:
    """The committed scorer (``guard/_guard_model.json``), if any; read once (the engine
    warms this on a worker thread so the event loop never reads the file)."""
    try:
        raw = resources.files(_MODEL_PACKAGE).joinpath("_guard_model.json").read_text(
            encoding="utf-8"
        )
    except (FileNotFoundError, ModuleNotFoundError):
        return None
    return GuardModel.from_json(json.loads(raw))
