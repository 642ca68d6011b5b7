"""A synthetic HTTP response whose body is pre-encoded server-sent events.

A cache hit served with ``stream=True`` must be the SDK's own ``Stream`` / ``AsyncStream``
(isinstance checks, ``.response``, ``.close()``, context manager, the ``messages.stream``
helper on top). Rather than imitating those classes, the codecs construct them exactly
as the SDK does after an HTTP call, over an ``httpx2.Response`` built here: the SDK's own
SSE decoder and model construction then parse the replay, so a replay can only yield
what a live stream would.

Both SDKs use ``httpx2`` (their own HTTP stack), so this module needs no SDK import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx2


class ReplayByteStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """One event per chunk, sync or async, consumed once.

    One shared cursor: the OpenAI SDK drains what is left of a body after ``[DONE]``
    (HTTP/1.1 connection reuse); a re-iterable body would be replayed twice.
    """

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)
        self._next = 0
        self.closed = False

    def _take(self) -> Iterator[bytes]:
        while not self.closed and self._next < len(self._chunks):
            chunk = self._chunks[self._next]
            self._next += 1
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        yield from self._take()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._take():
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(
    chunks: Sequence[bytes],
    *,
    url: str,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> httpx2.Response:
    """A 200 ``text/event-stream`` response carrying ``chunks``, tied to a request for
    ``url`` (the SDK reads ``response.request`` when it reports errors)."""
    all_headers = {"content-type": "text/event-stream; charset=utf-8", "x-cacheback-hit": "true"}
    all_headers.update(headers or {})
    return httpx2.Response(
        200,
        headers=all_headers,
        stream=ReplayByteStream(chunks),
        request=httpx2.Request(method, url),
    )


def join_url(base: object, path: str) -> str:
    return str(base).rstrip("/") + "/" + path.lstrip("/")


_T = TypeVar("_T")


class Ready(Awaitable[_T], Generic[_T]):
    """An awaitable that is already done, for the async stream managers' ``api_request``.

    Not a coroutine: a manager that is never entered leaves no "coroutine was never
    awaited" warning behind (tests run with warnings as errors)."""

    def __init__(self, value: _T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, _T]:
        return self._value
        yield  # unreachable; makes this a generator function, as __await__ must be
