"""Tee a live SDK stream into an accumulator without changing its type.

The SDKs' ``Stream``/``AsyncStream``/``MessageStream`` iterate ``self._iterator``; wrapping
that generator lets chunks reach the caller as they arrive while the accumulator builds
the answer that is committed to the cache once the stream has completed normally.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..providers import StreamAccumulator

Commit = Callable[[str, "bytes | None"], None]
UsageFill = Callable[[dict[str, Any]], None]


def _finish(acc: StreamAccumulator, commit: Commit, usage: UsageFill | None) -> None:
    answer, _verdict = acc.finish()
    if answer is None:
        return
    if usage is not None and answer.payload:
        usage(json.loads(answer.payload))  # the engine reads usage when the commit lands
    commit(answer.text, answer.payload)


def tee_sync(stream: Any, acc: StreamAccumulator, commit: Commit, usage: UsageFill | None = None) -> Any:
    inner: Iterator[Any] = stream._iterator

    def gen() -> Iterator[Any]:
        completed = False
        try:
            for item in inner:
                acc.feed(item)
                yield item
            completed = True
        finally:
            # Closed early or failed: never cache a partial answer.
            if completed:
                _finish(acc, commit, usage)

    stream._iterator = gen()
    return stream


def tee_async(stream: Any, acc: StreamAccumulator, commit: Commit, usage: UsageFill | None = None) -> Any:
    inner: AsyncIterator[Any] = stream._iterator

    async def gen() -> AsyncIterator[Any]:
        completed = False
        try:
            async for item in inner:
                acc.feed(item)
                yield item
            completed = True
        finally:
            if completed:
                _finish(acc, commit, usage)

    stream._iterator = gen()
    return stream
