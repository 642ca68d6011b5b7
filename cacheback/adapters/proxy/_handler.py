"""One proxied call as the engine sees it: the provider call (buffered, or a stream relayed
to the caller whose events the engine reads to cache the answer) and how its answers are
read; plus rendering an answer the cache synthesized."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core._call import Answer, Streamed, UpstreamCall, Usage
from ...core._early import PARKED
from ..providers import Codec as Api
from ..providers import RequestKey
from ._synthesis import MARKER, Rendered, SynthesisStream
from ._upstream import Buffered, RelayedStream, SSEParser
from ._wire import JSON, SSE, dumps

if TYPE_CHECKING:
    from ._proxy import Proxy

#: What a relayed stream's events may raise that only means "not cacheable".
_UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, RecursionError)


class _SSEReader:
    """Reads a relayed stream's raw chunks: SSE events into the accumulator and usage."""

    def __init__(self, api: Api) -> None:
        self._parser = SSEParser()
        self._acc = api.accumulator()
        self._event_usage = api.event_usage
        self._usage: Usage = {}

    def feed(self, chunk: Any) -> None:
        try:
            for event in self._parser.feed(chunk):
                self._acc.feed(event)
                if isinstance(event, Mapping):
                    self._usage.update(self._event_usage(event))
        except _UNREADABLE:
            # Unparseable framing (or JSON nested past the parser's limit): still relayed
            # to the caller, never cached.
            self._acc.fail("unparseable stream")

    def result(self) -> tuple[Answer | None, Usage]:
        try:
            answer, _ = self._acc.finish()
        except _UNREADABLE:
            return None, self._usage  # events of a shape the accumulator cannot read
        return answer, self._usage


@dataclass(slots=True)
class Call:
    api: Api
    body: dict[str, Any]
    raw: bytes
    url: str
    headers: list[tuple[str, str]]
    key: RequestKey

    def render(self, text: str, payload: bytes | None, *, keep_ids: bool = False) -> dict[str, Any]:
        """``keep_ids``: a stored provider answer keeps the provider's ids (so a Responses hit
        can be chained with ``previous_response_id``); synthesized answers get new ones."""
        return self.api.render(
            text, payload, model=self.body.get("model"), request=self.body, keep_ids=keep_ids
        )

    def synthesized(self, synthesis: str | AsyncIterator[str]) -> Rendered | SynthesisStream:
        """A synthesized answer in the provider's framing: whole, or streamed as written."""
        if not isinstance(synthesis, str):
            template = self.api.events(self.render(MARKER, None), self.key.stream_usage)
            return SynthesisStream(self.api, template, synthesis)
        data = self.render(synthesis, None)
        if self.key.stream:
            return Rendered(self.api.sse(data, self.key.stream_usage), SSE)
        return Rendered(dumps(data), JSON)


def _extract(api: Api, buffered: Buffered) -> tuple[Answer | None, Usage]:
    try:
        data = json.loads(buffered.body)
    except (ValueError, UnicodeDecodeError):
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    usage: Usage = api.usage(data)
    answer = api.answer(data)
    if answer is None:
        return None, usage
    # The provider's own bytes are the payload replayed on a hit.
    return _Stored(answer.text, buffered.body), usage


@dataclass(frozen=True, slots=True)
class _Stored:
    text: str
    payload: bytes | None


def upstream_call(proxy: Proxy, call: Call) -> UpstreamCall:
    """The engine's description of the provider call for one proxied request."""
    api = call.api

    async def send() -> Buffered | Streamed:
        up = proxy.upstream  # looked up only once the engine calls
        prepared = up.prepare("POST", call.url, call.headers, call.raw)
        gate = PARKED.get()
        if gate is not None:  # started early: the bytes are ready, the cache decides (core/_early.py)
            await gate.wait()
        if not call.key.stream:
            return await up.call("POST", call.url, call.headers, call.raw, prepared=prepared)
        resp = await up.open("POST", call.url, call.headers, call.raw, prepared=prepared)
        relay = RelayedStream(
            resp,
            provider=api.provider,
            api=api.name,
            on_error=lambda kind: proxy.metrics.upstream_error(api.provider, kind),
        )
        return Streamed(relay, relay.source)

    return UpstreamCall(
        send=send,
        streaming=call.key.stream,
        extract=lambda buffered: _extract(api, buffered),
        reader=lambda: _SSEReader(api),
        early=True,
        abortable=True,  # an HTTP call on the proxy's loop: cancelling it aborts the request
    )
