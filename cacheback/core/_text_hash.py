"""The exact-hit key of a text, computed off the event loop when the text is large.

Folding a text's whitespace and hashing it takes about 17-20 ms a megabyte, and a prompt
(or a stored question) can be many megabytes: above ``LARGE_TEXT_CHARS`` it runs on a
worker thread; below, inline, cheaper than the thread hop."""

from __future__ import annotations

import anyio
import anyio.to_thread

from ._types import text_hash

LARGE_TEXT_CHARS = 64 * 1024

# One large text at a time: several threads folding text would keep the GIL from the
# event loop's thread for several switch intervals in a row.
_LIMITER = anyio.CapacityLimiter(1)


async def text_hash_off_loop(text: str) -> str:
    """``text_hash(text)``, on a worker thread when the text is large."""
    if len(text) <= LARGE_TEXT_CHARS:
        return text_hash(text)
    return await anyio.to_thread.run_sync(text_hash, text, limiter=_LIMITER)


async def large_text_hash(text: str) -> str | None:
    """The key of a large text, computed off the loop; None for a short one (the caller
    hashes it inline where it needs it)."""
    if len(text) <= LARGE_TEXT_CHARS:
        return None
    return await anyio.to_thread.run_sync(text_hash, text, limiter=_LIMITER)
