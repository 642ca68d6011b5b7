"""Answers the proxy writes itself (synthesis): whole, or streamed as the cheap model
produces them, framed like the provider's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from ..providers import Codec
from ._errors import stream_error_event
from ._upstream import StreamingBody, aclose_if_closable
from ._wire import SSE

log = structlog.get_logger("cacheback.proxy")


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer the proxy wrote itself (synthesis)."""

    body: bytes
    media_type: str


# A one-word stand-in for the answer text: rendering it through the codecs' stream
# builders gives the exact event shapes of a live stream, split around its one delta.
MARKER = "cacheback-synthesis-text-marker"


def _swap(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return text if value == MARKER else value
    if isinstance(value, dict):
        return {k: _swap(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, text) for v in value]
    return value


class SynthesisStream(StreamingBody):
    """A synthesized answer streamed as the cheap model produces it, framed exactly like
    the provider's own stream (the events of ``api.events``, one delta per piece)."""

    def __init__(self, api: Codec, template: list[dict[str, Any]], deltas: AsyncIterator[str]) -> None:
        super().__init__(200, (), SSE)
        self._api = api
        self._deltas = deltas
        at = next(i for i, e in enumerate(template) if MARKER in json.dumps(e))
        self._prefix, self._delta, self._suffix = template[:at], template[at], template[at + 1 :]
        self._seq = 0

    def _event(self, event: dict[str, Any], text: str) -> bytes:
        out = _swap(event, text)
        if "sequence_number" in out:
            out["sequence_number"] = self._seq
        self._seq += 1
        return self._api.event_bytes(out)

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._prefix:
            yield self._event(event, "")
        parts: list[str] = []
        try:
            async for piece in self._deltas:
                if piece:
                    parts.append(piece)
                    yield self._event(self._delta, piece)
        except Exception as exc:
            log.warning("synthesis stream broke", error=type(exc).__name__)
            yield stream_error_event(
                self._api.provider, self._api.name, "The answer stream broke.", "api_error"
            )
            return
        text = "".join(parts)
        for event in self._suffix:
            yield self._event(event, text)
        yield self._api.stream_end

    async def finished(self, completed: bool) -> None:
        await aclose_if_closable(self._deltas)
