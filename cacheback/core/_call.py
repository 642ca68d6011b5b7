"""The one upstream call a request brings into the engine, and how its answer is read.

An adapter (a client, the proxy) describes the provider call as an :class:`UpstreamCall`:
``send`` makes the call and returns the provider's answer, or a :class:`Streamed` whose
``events`` the caller will read; ``extract`` and ``reader`` say what of it may be cached.
The engine calls ``send`` at most once per miss (identical misses share it), stores what
it saw, and hands the response back for the adapter to render. Nothing calls back into
the adapter after that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

#: ``{"input_tokens": int, "output_tokens": int, "model": str}``, priced by ``_costs``.
Usage = dict[str, Any]


class Answer(Protocol):
    """What the cache stores of a provider answer: text to match, payload to replay."""

    @property
    def text(self) -> str: ...

    @property
    def payload(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Text:
    """An answer known only as text (a synthesized one): stored without a payload."""

    text: str
    payload: bytes | None = None


class EventReader(Protocol):
    """Reads a provider stream's events as they pass to the caller."""

    def feed(self, event: Any) -> None: ...

    def result(self) -> tuple[Answer | None, Usage]:
        """Once the stream has ended normally: what to cache (None: nothing) and its usage."""
        ...


@dataclass(slots=True)
class Streamed:
    """A streamed answer: ``response`` is the adapter's object (an SDK stream, a relayed
    body) and ``events`` what it will deliver. The engine hands back a copy whose events
    are read as they pass; the adapter renders ``response`` over those."""

    response: Any
    events: AsyncIterator[Any] | Iterator[Any]


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One provider call, described for the engine.

    ``send()`` returns the provider's plain answer or a :class:`Streamed`; ``extract`` reads
    a plain answer (what to cache, or None, and its usage); ``reader()`` makes a stream's
    :class:`EventReader`. ``early``: ``send`` waits at the parked gate (``_early``) before
    anything goes out, so the engine may start it while it still looks the request up.
    ``abortable``: cancelling ``send`` aborts the request on the wire (an async HTTP call),
    so the engine may send it before its lookup ends (``speculative_upstream``) and take
    it back on a hit; a call run on a worker thread is not (it would run to its end).
    """

    send: Callable[[], Awaitable[Any]]
    streaming: bool
    extract: Callable[[Any], tuple[Answer | None, Usage]]
    reader: Callable[[], EventReader]
    early: bool = False
    abortable: bool = False
