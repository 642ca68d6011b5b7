"""Answers the proxy writes itself (synthesis): whole, or streamed as the cheap model
produces them, framed like the provider's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from cacheback._logging import get_logger

from ..providers import Codec
from ..providers._live import live_sse, shape_of
from ._errors import stream_error_event
from ._upstream import StreamingBody, aclose_if_closable
from ._wire import SSE

log = get_logger("cacheback.proxy")


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer the proxy wrote itself (synthesis)."""

    body: bytes
    media_type: str


# A one-word stand-in for the answer text: rendering it through the codecs' stream
# builders gives the exact event shapes of a live stream, split around its one delta.
MARKER = "cacheback-synthesis-text-marker"


class SynthesisStream(StreamingBody):
    """A synthesized answer streamed as the cheap model produces it, framed exactly like
    the provider's own stream (the events of ``api.events``, one delta per piece): the
    same live framing the SDK clients stream a synthesis in."""

    def __init__(self, api: Codec, template: list[dict[str, Any]], deltas: AsyncIterator[str]) -> None:
        super().__init__(200, (), SSE)
        self._api = api
        self._deltas = deltas
        self._shape = shape_of(api, template, MARKER)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async with aclosing(live_sse(self._shape, self._deltas)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as exc:
            log.warning("synthesis stream broke", error=type(exc).__name__)
            yield stream_error_event(
                self._api.provider, self._api.name, "The answer stream broke.", "api_error"
            )

    async def finished(self, completed: bool) -> None:
        await aclose_if_closable(self._deltas)
