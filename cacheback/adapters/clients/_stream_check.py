"""An SDK stream's events, checked: it must end with its API's end marker and carry JSON.

The engine reads a miss's stream events on their way to the caller and stores the answer
once they end normally (``stages/upstream.py``). A stream the upstream cut short (no
``[DONE]``, ``response.completed`` or ``message_stop``: ``providers/_stream_end.py``) or
one carrying data that is not JSON ends here with the SDK's own error class and the
message the proxy gives in the same case, so the caller knows, and the engine, which
sees the exception instead of a normal end, stores nothing. (The plain SDKs would end
quietly, or raise a bare JSONDecodeError.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..providers._stream_end import ANY_END, NOT_JSON, TRUNCATED, is_done_marker


class _EndWatch:
    """Whether a stream's end marker went by: on its server-sent events (``[DONE]`` never
    reaches the SDK's items), or on its typed items."""

    def __init__(self, stream: Any) -> None:
        self.watching = callable(getattr(stream, "_iter_events", None))
        self.ended = False

    def sse(self, sse: Any) -> None:
        if is_done_marker(getattr(sse, "data", "") or "") or getattr(sse, "event", None) in ANY_END:
            self.ended = True

    def item(self, item: Any) -> None:
        if getattr(item, "type", None) in ANY_END:
            self.ended = True

    @property
    def cut(self) -> bool:
        return self.watching and not self.ended


def stream_error(stream: Any, message: str) -> Exception:
    """What the SDK raises for an error event in the provider's format (what the proxy
    sends in the same case), for ``stream``'s own SDK."""
    response = getattr(stream, "response", None)
    if type(stream).__module__.split(".")[0] == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": "api_error", "message": message}}
        error: Exception = stream._client._make_status_error(f"{body}", body=body, response=response)
        return error
    import openai

    body = {"message": message, "type": "api_error", "param": None, "code": "api_error"}
    request = response.request if response is not None else None
    return openai.APIError(message, request, body=body)  # type: ignore[arg-type]


def checked(stream: Any) -> Iterator[Any] | AsyncIterator[Any]:
    """``stream``'s items, checked. Call it before the stream is iterated: it takes the
    stream's own iterator now (the SDK object then iterates what the engine makes of ours)."""
    inner = stream._iterator
    watch = _EndWatch(stream)
    if hasattr(inner, "__aiter__"):
        if watch.watching:
            events = stream._iter_events

            async def awatched() -> AsyncIterator[Any]:
                async for sse in events():
                    watch.sse(sse)
                    yield sse

            stream._iter_events = awatched  # read when the SDK's generator starts: not yet
        return _checked_async(stream, inner, watch)
    if watch.watching:
        sync_events = stream._iter_events

        def watched() -> Iterator[Any]:
            for sse in sync_events():
                watch.sse(sse)
                yield sse

        stream._iter_events = watched
    return _checked_sync(stream, inner, watch)


def _checked_sync(stream: Any, inner: Iterator[Any], watch: _EndWatch) -> Iterator[Any]:
    try:
        for item in inner:
            watch.item(item)
            yield item
    except json.JSONDecodeError as exc:
        raise stream_error(stream, NOT_JSON) from exc
    if watch.cut:
        raise stream_error(stream, TRUNCATED)


async def _checked_async(stream: Any, inner: AsyncIterator[Any], watch: _EndWatch) -> AsyncIterator[Any]:
    try:
        async for item in inner:
            watch.item(item)
            yield item
    except json.JSONDecodeError as exc:
        raise stream_error(stream, NOT_JSON) from exc
    if watch.cut:
        raise stream_error(stream, TRUNCATED)
