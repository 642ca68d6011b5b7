"""Live streams of text produced elsewhere (the synthesis tier) in a provider's own format.

A stream's shape (prefix events, one delta event, closing events) is taken from the
replay encoder run on a template whose text is a private-use sentinel: every event
naming the sentinel is either the delta (repeated, once per live piece of text) or a
closing event that carries the full text (filled in at the end). So a live stream has
exactly the framing a replay of the finished answer would have.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.from_thread
import httpx2

from ._codec import Codec
from ._stream_replay import join_url

SENTINEL = "\ue000"
_HUGE = 1 << 30


@dataclass(frozen=True, slots=True)
class LiveShape:
    prefix: list[dict[str, Any]]
    delta: str  # JSON of the delta event, marker inside
    suffix: list[str]  # JSON of the closing events, marker = full text
    encode: Callable[[dict[str, Any]], bytes]
    trailer: list[bytes]
    marker: str = SENTINEL


def live_shape(codec: Codec, template: object, *, include_usage: bool = False) -> LiveShape:
    """``template`` is the rebuilt SDK object (or dict) whose text is ``SENTINEL``."""
    return shape_of(codec, codec.events(template, include_usage, _HUGE))


def shape_of(codec: Codec, events: list[dict[str, Any]], marker: str = SENTINEL) -> LiveShape:
    """The shape of the stream ``events`` of an answer whose whole text is ``marker`` (one
    word: one delta event)."""
    dumped = [json.dumps(e, ensure_ascii=False) for e in events]
    first = next(i for i, d in enumerate(dumped) if marker in d)
    return LiveShape(
        prefix=events[:first],
        delta=dumped[first],
        suffix=dumped[first + 1 :],
        encode=codec.event_bytes,
        trailer=[codec.stream_end] if codec.stream_end else [],
        marker=marker,
    )


def _fill(template: str, marker: str, text: str) -> dict[str, Any]:
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    out: dict[str, Any] = json.loads(template.replace(marker, escaped))
    return out


async def live_sse(shape: LiveShape, deltas: AsyncIterator[str]) -> AsyncGenerator[bytes, None]:
    """SSE bytes for ``deltas`` as they arrive; sequence numbers kept consecutive."""
    seq = 0

    def numbered(event: dict[str, Any]) -> bytes:
        nonlocal seq
        if "sequence_number" in event:
            event["sequence_number"] = seq
        seq += 1
        return shape.encode(event)

    for event in shape.prefix:
        yield numbered(dict(event))
    parts: list[str] = []
    async for piece in deltas:
        if piece:
            parts.append(piece)
            yield numbered(_fill(shape.delta, shape.marker, piece))
    full = "".join(parts)
    for event_json in shape.suffix:
        yield numbered(_fill(event_json, shape.marker, full))
    for chunk in shape.trailer:
        yield chunk


class LiveByteStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """An HTTP body fed by an async generator; iterable from the loop or (with the loop's
    token) from a sync caller's thread."""

    def __init__(self, source: AsyncIterator[bytes], token: Any = None) -> None:
        self._source = source
        self._token = token
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            if self.closed:
                break
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        source = self._source

        async def nxt() -> bytes:
            return await source.__anext__()

        while not self.closed:
            try:
                yield anyio.from_thread.run(nxt, token=self._token)
            except StopAsyncIteration:
                return

    async def aclose(self) -> None:
        self.closed = True
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None and self._token is not None:
            try:
                anyio.from_thread.run(aclose, token=self._token)
            except RuntimeError:
                pass  # the loop is gone; nothing left to release


def live_response(body: LiveByteStream, *, url: str) -> httpx2.Response:
    return httpx2.Response(
        200,
        headers={"content-type": "text/event-stream; charset=utf-8", "x-cacheback-synthesized": "true"},
        stream=body,
        request=httpx2.Request("POST", url),
    )


def sdk_live_stream(client: Any, codec: Codec, body: LiveByteStream) -> Any:
    """The SDK's own ``Stream``/``AsyncStream`` over a live body, as after an HTTP call
    (``_request_id`` None: the provider was not asked)."""
    return codec.open_stream(client, live_response(body, url=join_url(client.base_url, codec.path)))
