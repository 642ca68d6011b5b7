"""A fake OpenAI + Anthropic server for tests: real HTTP on 127.0.0.1, real SSE.

Start it with ``start_fake_provider()`` (a context manager) or the ``fake_provider``
pytest fixture (import it explicitly; there is no conftest for it). Point the real SDKs
at ``fake.openai_base_url`` / ``fake.anthropic_base_url``.

Endpoints (names used by ``count``/``requests``/``script``):

* ``chat``        POST /v1/chat/completions  JSON, or SSE with ``stream=True``
                  (``stream_options.include_usage`` honoured, ``n`` > 1 honoured)
* ``responses``   POST /v1/responses         JSON, or typed SSE events
* ``embeddings``  POST /v1/embeddings        deterministic unit vectors (float/base64)
* ``models``      GET  /v1/models            OpenAI list, or Anthropic's shape when the
                                             request carries ``anthropic-version``
* ``messages``    POST /v1/messages          Anthropic JSON, or SSE events

Answers are deterministic: ``Answer to: <last user text> [<model>]`` unless the test
passes ``answer=`` or scripts replies (``fake.script(...)`` queues, ``fake.responder``
hook). A ``Reply`` can inject an HTTP error in the provider's own error format, a delay,
a hang (a timeout for the client), truncation (``finish_reason``), a refusal, a tool call,
a mid-stream error, or slow streaming.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    import anthropic
    import openai

ENDPOINTS = ("chat", "responses", "embeddings", "models", "messages")

AnswerFn = Callable[[str, str], str]


def default_answer(question: str, model: str) -> str:
    return f"Answer to: {question} [{model}]"


@dataclass
class Reply:
    """What the fake does for one call. Every field is optional.

    ``finish_reason`` takes the generic ``"length"`` / ``"content_filter"`` (mapped per
    API: chat finish_reason, responses ``status="incomplete"``, anthropic ``max_tokens`` /
    ``refusal``) or an API's own value (``"tool_calls"``, ``"max_tokens"``, ...).
    """

    text: str | None = None  # the answer (default: derived from question and model)
    texts: list[str] | None = None  # one answer per choice (chat, n > 1)
    status: int = 200  # != 200: an error in the provider's format
    error_message: str | None = None
    error_type: str | None = None
    error_body: Any = None  # a raw error body instead of the generated one
    delay: float = 0.0  # seconds before the response starts
    hang: bool = False  # never answer (until the client gives up)
    chunk_delay: float = 0.0  # seconds between stream events
    finish_reason: str | None = None
    refusal: str | None = None  # refuse with this text instead of answering
    tool_call: tuple[str, dict[str, Any]] | None = None  # (name, arguments)
    stream_error_after: int | None = None  # an error event after this many text deltas
    # A stream that ends without its end marker: only its first N events are sent (a
    # negative N: all but the last -N; -1 drops just [DONE] / response.completed /
    # message_stop), then the body ends cleanly.
    stream_cut_after: int | None = None
    stream_garbage_after: int | None = None  # a `data:` line that is not JSON after N events
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        return str(self.body.get("model", "")) if isinstance(self.body, dict) else ""

    @property
    def question(self) -> str:
        return _question(self.endpoint, self.body)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def _question(endpoint: str, body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if endpoint == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
    else:
        items = body.get("messages")
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            text = _text_of(item.get("content"))
            if text:
                return text
    return ""


_WORDS = re.compile(r"\S+\s*|\s+")


def _pieces(text: str) -> list[str]:
    return _WORDS.findall(text)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _sse(data: Any, event: str | None = None) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {body}\n\n".encode()


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


class FakeProvider:
    """The running fake; thread-safe (the server runs on its own thread)."""

    def __init__(self, *, answer: AnswerFn | None = None, api_key: str | None = None) -> None:
        self.answer_fn: AnswerFn = answer or default_answer
        self.api_key = api_key  # when set, other keys get a 401
        self.responder: Callable[[RecordedRequest], Reply | None] | None = None
        self.base_url = ""
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._requests: list[RecordedRequest] = []
        self._queues: dict[str | None, deque[Reply]] = {}
        self._closing = threading.Event()
        self._seq = 0

    # --- test-facing API ----------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url  # the Anthropic SDK adds /v1 itself

    def count(self, endpoint: str | None = None) -> int:
        """Calls received (on one endpoint, or in total), including failed ones."""
        with self._lock:
            return self._calls[endpoint] if endpoint else sum(self._calls.values())

    @property
    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    def last_request(self, endpoint: str | None = None) -> RecordedRequest:
        found = self.requests(endpoint)
        if not found:
            raise AssertionError(f"no request on {endpoint or 'any endpoint'}")
        return found[-1]

    def script(self, *replies: Reply, endpoint: str | None = None) -> None:
        """Queue replies for the next calls (to ``endpoint``, or to any endpoint)."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._queues.setdefault(endpoint, deque()).extend(replies)

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        endpoint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.script(
            *[Reply(status=status, error_message=message) for _ in range(times)],
            endpoint=endpoint,
        )

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._requests.clear()
            self._queues.clear()
        self.responder = None

    # SDK clients pointed at the fake (no retries unless asked: counts stay exact).

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        import openai

        return openai.OpenAI(**self._client_args(kwargs, "base_url", self.openai_base_url))

    def async_openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(**self._client_args(kwargs, "base_url", self.openai_base_url))

    def anthropic(self, **kwargs: Any) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(**self._client_args(kwargs, "base_url", self.anthropic_base_url))

    def async_anthropic(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        import anthropic

        return anthropic.AsyncAnthropic(**self._client_args(kwargs, "base_url", self.anthropic_base_url))

    def _client_args(self, kwargs: dict[str, Any], key: str, url: str) -> dict[str, Any]:
        return {"api_key": self.api_key or "sk-fake", "max_retries": 0, key: url, **kwargs}

    # --- plumbing -----------------------------------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _record(self, req: RecordedRequest) -> Reply:
        with self._lock:
            self._calls[req.endpoint] += 1
            self._requests.append(req)
            for key in (req.endpoint, None):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        responder = self.responder
        reply = responder(req) if responder is not None else None
        return reply or Reply()

    async def _sleep(self, seconds: float, request: Request) -> bool:
        """Sleep, waking early when the client leaves or the server stops (False then)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._closing.is_set() or await request.is_disconnected():
                return False
            await asyncio.sleep(min(left, 0.02))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._endpoint("chat"), methods=["POST"]),
                Route("/v1/responses", self._endpoint("responses"), methods=["POST"]),
                Route("/v1/embeddings", self._endpoint("embeddings"), methods=["POST"]),
                Route("/v1/messages", self._endpoint("messages"), methods=["POST"]),
                Route("/v1/models", self._endpoint("models"), methods=["GET"]),
            ]
        )

    def _endpoint(self, name: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            return await self._handle(name, request)

        return handle

    async def _handle(self, endpoint: str, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        if endpoint == "models" and "anthropic-version" in headers:
            flavour = "anthropic"
        else:
            flavour = "anthropic" if endpoint == "messages" else "openai"
        rec = RecordedRequest(endpoint, request.method, request.url.path, headers, body)
        reply = self._record(rec)
        if reply.delay and not await self._sleep(reply.delay, request):
            return Response(status_code=499)
        if reply.hang:
            await self._sleep(math.inf, request)
            return Response(status_code=499)
        if self.api_key is not None and self._key_of(headers) != self.api_key:
            reply = Reply(status=401, error_message="Incorrect API key provided")
        if reply.status == 200 and raw and body is None:
            reply = Reply(status=400, error_message="We could not parse the JSON body.")
        if reply.status != 200:
            return self._error(flavour, reply)
        body = body if isinstance(body, dict) else {}
        if endpoint == "models":
            return JSONResponse(self._models(flavour, body), headers=reply.headers)
        if endpoint == "embeddings":
            return JSONResponse(self._embeddings(body), headers=reply.headers)
        model = str(body.get("model", ""))
        question = rec.question
        texts = reply.texts or [reply.text if reply.text is not None else self.answer_fn(question, model)]
        if endpoint == "chat":
            n = int(body.get("n") or 1)
            if not reply.texts and n > 1:
                texts = [f"{texts[0]} #{i + 1}" for i in range(n)]
            builder = _Chat(self._next_id(), model, question, texts, reply, body)
        elif endpoint == "responses":
            builder = _Responses(self._next_id(), model, question, texts, reply, body)
        else:
            builder = _Messages(self._next_id(), model, question, texts, reply, body)
        headers_out = {"x-request-id": f"req_fake{builder.n}", **reply.headers}
        if body.get("stream"):
            return StreamingResponse(
                self._paced(_faulty(builder.events(), reply), reply.chunk_delay),
                media_type="text/event-stream",
                headers=headers_out,
            )
        return JSONResponse(builder.json(), headers=headers_out)

    async def _paced(self, events: Iterator[bytes], delay: float) -> AsyncIterator[bytes]:
        for chunk in events:
            yield chunk
            if delay:
                await asyncio.sleep(delay)

    @staticmethod
    def _key_of(headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return headers.get("x-api-key")

    @staticmethod
    def _error(flavour: str, reply: Reply) -> Response:
        kind = reply.error_type or _ERROR_TYPES.get(reply.status, "api_error")
        message = reply.error_message or f"Injected error {reply.status}"
        if reply.error_body is not None:
            payload = reply.error_body
        elif flavour == "anthropic":
            payload = {
                "type": "error",
                "error": {"type": kind, "message": message},
                "request_id": "req_fake_error",
            }
        else:
            payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return JSONResponse(payload, status_code=reply.status, headers=reply.headers)

    @staticmethod
    def _models(flavour: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ids = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        if flavour == "anthropic":
            ids = ["claude-sonnet-4-20250514", "claude-haiku-4-5"]
            data = [
                {"type": "model", "id": i, "display_name": i, "created_at": "2025-05-14T00:00:00Z"}
                for i in ids
            ]
            return {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
        data = [{"id": i, "object": "model", "created": 1715367049, "owned_by": "fake"} for i in ids]
        return {"object": "list", "data": data}

    @staticmethod
    def _embeddings(body: Mapping[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        dims = int(body.get("dimensions") or 16)
        data = []
        for i, item in enumerate(items):
            vector = embed_text(json.dumps(item) if not isinstance(item, str) else item, dims)
            value: Any = vector
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(_tokens(str(x)) for x in items)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def embed_text(text: str, dims: int = 16) -> list[float]:
    """The fake's embedding: a deterministic unit vector derived from the text's hash."""
    raw = hashlib.shake_256(text.encode()).digest(dims * 2)
    values = [(int.from_bytes(raw[2 * i : 2 * i + 2], "little") / 32767.5) - 1.0 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


# --- response builders -------------------------------------------------------------------


class _Builder:
    def __init__(
        self,
        n: int,
        model: str,
        question: str,
        texts: list[str],
        reply: Reply,
        body: Mapping[str, Any],
    ) -> None:
        self.n = n
        self.model = model
        self.question = question
        self.texts = texts
        self.reply = reply
        self.body = body
        self.created = int(time.time())
        self.prompt_tokens = _tokens(json.dumps(body.get("messages") or body.get("input") or ""))

    @property
    def completion_tokens(self) -> int:
        if self.reply.refusal is not None:
            return _tokens(self.reply.refusal)
        return sum(_tokens(t) for t in self.texts)

    def json(self) -> dict[str, Any]:
        raise NotImplementedError

    def events(self) -> Iterator[bytes]:
        raise NotImplementedError


class _Chat(_Builder):
    def finish_reason(self) -> str:
        if self.reply.tool_call is not None:
            return "tool_calls"
        return self.reply.finish_reason or "stop"

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _tool_call(self) -> dict[str, Any]:
        assert self.reply.tool_call is not None
        name, args = self.reply.tool_call
        return {
            "id": f"call_fake{self.n}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }

    def json(self) -> dict[str, Any]:
        choices = []
        for i, text in enumerate(self.texts):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": [],
            }
            if self.reply.refusal is not None:
                message.update(content=None, refusal=self.reply.refusal)
            if self.reply.tool_call is not None:
                message.update(content=None, tool_calls=[self._tool_call()])
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": self.finish_reason()}
            )
        return {
            "id": f"chatcmpl-fake{self.n}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": f"chatcmpl-fake{self.n}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": choices,
            **extra,
        }
        if self._include_usage and "usage" not in extra:
            data["usage"] = None
        return _sse(data)

    @property
    def _include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def events(self) -> Iterator[bytes]:
        def choice(i: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}

        for i in range(len(self.texts)):
            yield self._chunk([choice(i, {"role": "assistant", "content": "", "refusal": None})])
        sent = 0
        for i, text in enumerate(self.texts):
            if self.reply.tool_call is not None:
                call = self._tool_call()
                head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
                yield self._chunk([choice(i, {"tool_calls": [head]})])
                for piece in _pieces(call["function"]["arguments"]):
                    args = {"index": 0, "function": {"arguments": piece}}
                    yield self._chunk([choice(i, {"tool_calls": [args]})])
                continue
            field_name = "refusal" if self.reply.refusal is not None else "content"
            source = self.reply.refusal if self.reply.refusal is not None else text
            for piece in _pieces(source):
                if self.reply.stream_error_after is not None and sent >= self.reply.stream_error_after:
                    yield _sse(
                        {
                            "error": {
                                "message": self.reply.error_message or "stream broke",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    )
                    return
                sent += 1
                yield self._chunk([choice(i, {field_name: piece})])
        for i in range(len(self.texts)):
            yield self._chunk([choice(i, {}, self.finish_reason())])
        if self._include_usage:
            yield self._chunk([], usage=self.usage())
        yield _sse("[DONE]")


class _Responses(_Builder):
    def _incomplete(self) -> dict[str, Any] | None:
        reason = self.reply.finish_reason
        if reason in ("length", "max_output_tokens"):
            return {"reason": "max_output_tokens"}
        if reason == "content_filter":
            return {"reason": "content_filter"}
        return None

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        if self.reply.refusal is not None:
            part: dict[str, Any] = {"type": "refusal", "refusal": self.reply.refusal}
        else:
            part = {"type": "output_text", "text": text or "", "annotations": [], "logprobs": []}
        return {
            "id": f"msg_fake{self.n}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [] if text is None else [part],
        }

    def _function_call(self, status: str, arguments: str) -> dict[str, Any]:
        assert self.reply.tool_call is not None
        return {
            "id": f"fc_fake{self.n}",
            "type": "function_call",
            "status": status,
            "call_id": f"call_fake{self.n}",
            "name": self.reply.tool_call[0],
            "arguments": arguments,
        }

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        body = self.body
        incomplete = self._incomplete() if status != "in_progress" else None
        final = "incomplete" if incomplete else status
        usage = None
        if status != "in_progress":
            usage = {
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": self.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            }
        return {
            "id": f"resp_fake{self.n}",
            "object": "response",
            "created_at": self.created,
            "status": final,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _text(self) -> str:
        return self.texts[0]

    def json(self) -> dict[str, Any]:
        if self.reply.tool_call is not None:
            output = [self._function_call("completed", json.dumps(self.reply.tool_call[1]))]
        else:
            status = "incomplete" if self._incomplete() else "completed"
            output = [self._message(status, self._text())]
        return self._response("completed", output)

    def events(self) -> Iterator[bytes]:
        seq = 0

        def ev(kind: str, **data: Any) -> bytes:
            nonlocal seq
            out = _sse({"type": kind, "sequence_number": seq, **data}, event=kind)
            seq += 1
            return out

        yield ev("response.created", response=self._response("in_progress", []))
        yield ev("response.in_progress", response=self._response("in_progress", []))
        if self.reply.tool_call is not None:
            arguments = json.dumps(self.reply.tool_call[1])
            item_id = f"fc_fake{self.n}"
            yield ev(
                "response.output_item.added", output_index=0, item=self._function_call("in_progress", "")
            )
            for piece in _pieces(arguments):
                yield ev(
                    "response.function_call_arguments.delta", item_id=item_id, output_index=0, delta=piece
                )
            yield ev(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=0,
                arguments=arguments,
                name=self.reply.tool_call[0],
            )
            done = self._function_call("completed", arguments)
            yield ev("response.output_item.done", output_index=0, item=done)
            yield ev("response.completed", response=self._response("completed", [done]))
            return
        item_id = f"msg_fake{self.n}"
        refusing = self.reply.refusal is not None
        source = self.reply.refusal if refusing else self._text()
        assert source is not None
        empty = (
            {"type": "refusal", "refusal": ""}
            if refusing
            else {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        )
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        yield ev("response.output_item.added", output_index=0, item=self._message("in_progress", None))
        yield ev("response.content_part.added", part=empty, **where)
        for i, piece in enumerate(_pieces(source)):
            if self.reply.stream_error_after is not None and i >= self.reply.stream_error_after:
                yield ev(
                    "error",
                    code="server_error",
                    param=None,
                    message=self.reply.error_message or "stream broke",
                )
                return
            if refusing:
                yield ev("response.refusal.delta", delta=piece, **where)
            else:
                yield ev("response.output_text.delta", delta=piece, logprobs=[], **where)
        if refusing:
            yield ev("response.refusal.done", refusal=source, **where)
        else:
            yield ev("response.output_text.done", text=source, logprobs=[], **where)
        message = self._message("incomplete" if self._incomplete() else "completed", self._text())
        yield ev("response.content_part.done", part=message["content"][0], **where)
        yield ev("response.output_item.done", output_index=0, item=message)
        final = self._response("completed", [message])
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield ev(kind, response=final)


class _Messages(_Builder):
    def stop_reason(self) -> str:
        if self.reply.tool_call is not None:
            return "tool_use"
        if self.reply.refusal is not None:
            return "refusal"
        reason = self.reply.finish_reason
        return {"length": "max_tokens", "content_filter": "refusal", None: "end_turn"}.get(
            reason, reason or "end_turn"
        )

    def _text(self) -> str:
        return self.reply.refusal if self.reply.refusal is not None else self.texts[0]

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        }

    def _message(self, content: list[dict[str, Any]], stop: str | None, out: int) -> dict[str, Any]:
        return {
            "id": f"msg_fake{self.n:024d}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": self._usage(out),
        }

    def _tool_block(self, with_input: bool) -> dict[str, Any]:
        assert self.reply.tool_call is not None
        name, args = self.reply.tool_call
        return {
            "type": "tool_use",
            "id": f"toolu_fake{self.n}",
            "name": name,
            "input": args if with_input else {},
        }

    def json(self) -> dict[str, Any]:
        if self.reply.tool_call is not None:
            content = [self._tool_block(True)]
        else:
            content = [{"type": "text", "text": self._text()}]
        return self._message(content, self.stop_reason(), self.completion_tokens)

    def events(self) -> Iterator[bytes]:
        def ev(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, **data}, event=kind)

        yield ev("message_start", message=self._message([], None, 1))
        if self.reply.tool_call is not None:
            yield ev("content_block_start", index=0, content_block=self._tool_block(False))
            yield ev("ping")
            for piece in _pieces(json.dumps(self.reply.tool_call[1])):
                yield ev(
                    "content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": piece}
                )
        else:
            yield ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
            yield ev("ping")
            for i, piece in enumerate(_pieces(self._text())):
                if self.reply.stream_error_after is not None and i >= self.reply.stream_error_after:
                    yield ev(
                        "error",
                        error={
                            "type": self.reply.error_type or "overloaded_error",
                            "message": self.reply.error_message or "Overloaded",
                        },
                    )
                    return
                yield ev("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        yield ev("content_block_stop", index=0)
        yield ev(
            "message_delta",
            delta={"stop_reason": self.stop_reason(), "stop_sequence": None},
            usage={"output_tokens": self.completion_tokens},
        )
        yield ev("message_stop")


# --- lifecycle ---------------------------------------------------------------------------


def _faulty(events: Iterator[bytes], reply: Reply) -> Iterator[bytes]:
    """``events`` cut short or with a non-JSON event, as ``reply`` asks."""
    if reply.stream_cut_after is None and reply.stream_garbage_after is None:
        yield from events
        return
    every = list(events)
    if reply.stream_cut_after is not None:
        every = every[: reply.stream_cut_after]
    if reply.stream_garbage_after is not None:
        every.insert(reply.stream_garbage_after, b"data: {this is not json\n\n")
    yield from every


@contextmanager
def start_fake_provider(
    *, answer: AnswerFn | None = None, api_key: str | None = None
) -> Iterator[FakeProvider]:
    """Run a fake provider on a free port of 127.0.0.1 for the duration of the block."""
    fake = FakeProvider(answer=answer, api_key=api_key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: no 40 ms delayed-ACK stall per response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake.app(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake provider did not start")
        time.sleep(0.005)
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake._closing.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fresh fake provider per test (import this fixture explicitly)."""
    with start_fake_provider() as fake:
        yield fake
