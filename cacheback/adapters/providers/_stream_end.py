"""How each API's stream says it is over, and what a caller is told when it never did.

A provider ends a stream with a marker: chat completions with ``data: [DONE]``, the
Responses API with ``response.completed`` (or ``.incomplete`` / ``.failed``), Anthropic
messages with ``message_stop``; an ``error`` event also ends it. A stream that stops
without one was cut (a proxy, a load balancer, a crash upstream): its answer is
incomplete, so the caller gets an error and nothing is cached. Data that is not JSON is
treated the same way: no SDK can read it.
"""

from __future__ import annotations

from collections.abc import Mapping

TRUNCATED = "The upstream stream ended before its end marker: the answer is incomplete."
NOT_JSON = "The upstream stream sent data that is not JSON: the answer is incomplete."

_ENDS = {
    "responses": frozenset({"response.completed", "response.incomplete", "response.failed", "error"}),
    "messages": frozenset({"message_stop", "error"}),
}


#: Every API's end events at once: no API uses another's names, so a reader that does not
#: know which API it watches (the clients' stream tee) can still tell.
ANY_END = frozenset().union(*_ENDS.values())


def api_of(name: str) -> str:
    """``chat`` / ``responses`` / ``messages`` from a proxy API name or a client spec name
    (``openai.chat``, ``anthropic.messages``, ...)."""
    return name.rsplit(".", 1)[-1]


def is_done_marker(data: bytes | str) -> bool:
    """Chat completions' last ``data:`` line (the SDKs compare its start, so do we)."""
    if isinstance(data, bytes):
        return data.startswith(b"[DONE]")
    return data.startswith("[DONE]")


def ends_stream(api: str, event_type: str | None, event: object = None) -> bool:
    """Whether an event of ``api``'s stream (by its ``type``, or its SSE ``event:`` name)
    is one after which the stream may end. A chat chunk carrying ``error`` is one too: the
    provider reported the failure itself."""
    kind = api_of(api)
    if kind == "chat":
        return isinstance(event, Mapping) and event.get("error") is not None
    ends = _ENDS.get(kind)
    return ends is not None and event_type in ends
