"""The engine's ``TierHandler`` for one proxied call: how to ask the provider (buffered,
or streamed to the caller while a tap collects the answer to cache) and how to render
an answer the cache synthesized."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core._job import Commit, Reply
from ..providers import RequestKey
from ._apis import Api
from ._synthesis import MARKER, Rendered, SynthesisStream
from ._upstream import RelayedStream
from ._wire import JSON, SSE, dumps

if TYPE_CHECKING:
    from ._proxy import Proxy


class _Tap:
    """Feeds a relayed stream's events to the accumulator and the usage record."""

    def __init__(self, api: Api, usage: dict[str, Any]) -> None:
        self.acc = api.accumulator()
        self._usage = api.event_usage
        self.usage = usage

    def feed(self, event: Any) -> None:
        self.acc.feed(event)
        if isinstance(event, Mapping):
            self._usage(event, self.usage)

    def fail(self, reason: str) -> None:
        self.acc.fail(reason)


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


class Handler:
    """The engine's ``TierHandler`` for one proxied call."""

    def __init__(self, proxy: Proxy, call: Call) -> None:
        # The proxy, not its upstream: that is only looked up once the engine calls.
        self._proxy = proxy
        self._call = call

    @property
    def streaming(self) -> bool:
        return self._call.key.stream

    async def upstream(self, commit: Commit) -> Reply:
        c = self._call
        up = self._proxy.upstream
        if c.key.stream:
            resp = await up.open("POST", c.url, c.headers, c.raw)
            usage: dict[str, Any] = {}  # filled in place as the stream goes (engine contract)
            tap = _Tap(c.api, usage)

            def done(ok: bool) -> None:
                if not ok:
                    return
                try:
                    answer, _ = tap.acc.finish()
                except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
                    return  # events of a shape the accumulator cannot read: relayed, not cached
                if answer is not None:
                    commit(answer.text, answer.payload)

            stream = RelayedStream(
                resp,
                provider=c.api.provider,
                api=c.api.name,
                tap=tap,
                on_done=done,
                on_error=lambda kind: self._proxy.metrics.upstream_error(c.api.provider, kind),
            )
            return Reply(response=stream, deferred=True, usage=usage)
        buffered = await up.call("POST", c.url, c.headers, c.raw)
        try:
            data = json.loads(buffered.body)
        except (ValueError, UnicodeDecodeError):
            return Reply(response=buffered)
        if not isinstance(data, dict):
            return Reply(response=buffered)
        usage = {}
        c.api.usage(data, usage)
        if c.api.verdict(data):
            # The provider's own bytes are the payload replayed on a hit.
            return Reply(
                response=buffered, answer=c.api.answer(data).text, payload=buffered.body, usage=usage
            )
        return Reply(response=buffered, usage=usage)

    async def synthesized(self, text: str | None, stream: Any | None, usage: dict[str, int]) -> Reply:
        c = self._call
        if c.key.stream and stream is not None:
            template = c.api.events(c.render(MARKER, None), c.key.stream_usage)
            return Reply(response=SynthesisStream(c.api, template, stream), usage=usage)
        if text is None and stream is not None:
            text = "".join([piece async for piece in stream])
        data = c.render(text or "", None)
        if c.key.stream:
            return Reply(response=Rendered(c.api.sse(data, c.key.stream_usage), SSE), usage=usage)
        return Reply(response=Rendered(dumps(data), JSON), usage=usage)
