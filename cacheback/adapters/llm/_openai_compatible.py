"""The synthesis tier's cheap model: any OpenAI-compatible chat completions endpoint.

Keys go only where they belong:

* ``synthesis_api_key`` is sent only to ``synthesis_base_url`` (and is ignored, with a
  warning, when no base URL is set: it is never sent to a default host);
* ``OPENROUTER_API_KEY`` is sent only to an ``openrouter.ai`` host;
* ``OPENAI_API_KEY`` is sent only to ``api.openai.com``;
* redirects are never followed, so a key cannot be carried to another host.

The endpoint is never the cacheback proxy itself: ``llm_from_settings`` refuses a base
URL that points at the proxy's own address (a request would loop through the cache).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx

from cacheback._logging import get_logger

from ...core._costs import estimate_tokens
from ...core._errors import CachebackError, ConfigError
from ...core._ports import LLM, LLMReply
from ...core._settings import Settings, SynthesisSettings

log = get_logger("cacheback.synthesis")

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
OPENAI_BASE_URL = "https://api.openai.com/v1"
#: The cheap model used through OpenRouter when ``synthesis_model`` is not set.
DEFAULT_OPENROUTER_MODEL = "google/gemini-2.5-flash-lite"

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "ip6-localhost"})
_CONNECT_TIMEOUT_S = 5.0
_ERROR_BODY_CHARS = 300


class LLMError(CachebackError):
    """The synthesis endpoint failed: HTTP error, bad body, timeout or a broken stream."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def is_openrouter_host(host: str) -> bool:
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def is_openai_host(host: str) -> bool:
    return host == "api.openai.com"


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        return port
    return {"http": 80, "https": 443}.get(parts.scheme.lower())


def same_endpoint(base_url: str, address: str) -> bool:
    """Whether ``base_url`` reaches the server listening on ``address`` (``host:port`` or a URL).

    Loopback names and wildcard binds count as the same host: a proxy bound to
    ``0.0.0.0:8080`` is reached as ``http://localhost:8080/v1``.
    """
    if "://" not in address:
        address = f"http://{address}"
    a_host, b_host = _host(base_url), _host(address)
    if _port(base_url) != _port(address):
        return False
    local = _LOOPBACK | {socket.gethostname().lower()}
    return a_host == b_host or (a_host in local and b_host in local)


class OpenAICompatibleLLM:
    """``LLM`` over ``httpx.AsyncClient`` for ``POST {base_url}/chat/completions``.

    ``complete()`` returns the whole reply; ``stream()`` yields text deltas as they
    arrive (SSE) and, once exhausted, exposes the usage as ``.result`` (an
    :class:`LLMReply`). Usage is asked for in streams (``stream_options.include_usage``)
    and estimated (``extra["usage_estimated"]``) when an endpoint reports none.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        temperature: float | None = None,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the synthesis base URL must be an http(s) URL, not {base_url!r}")
        if not model:
            raise ConfigError("a synthesis model id is required")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self._api_key = api_key
        self._extra_headers = dict(headers or {})
        self._client_arg = client
        self._http: httpx.AsyncClient | None = client
        self._lock: anyio.Lock | None = None
        # OpenAI's own API wants max_completion_tokens (reasoning models reject max_tokens).
        self._max_tokens_field = "max_completion_tokens" if is_openai_host(_host(base_url)) else "max_tokens"

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def host(self) -> str:
        return _host(self.base_url)

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai-compatible", "base_url": self.base_url, "model": self.model}

    # -- http ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "user-agent": "cacheback-synthesis",
            **self._extra_headers,
        }
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._http is None:
                # Building the TLS context reads the CA bundle: keep that off the event loop.
                self._http = await anyio.to_thread.run_sync(_new_client)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter created it."""
        http, self._http = self._http, self._client_arg
        if http is not None and http is not self._client_arg:
            await http.aclose()

    def _body(self, messages: Sequence[Mapping[str, str]], max_tokens: int, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            self._max_tokens_field: max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    @staticmethod
    def _timeout(seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT_S))

    # -- LLM port --------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        timeout: float,  # noqa: ASYNC109 - the HTTP client's timeout, not a cancel scope
    ) -> LLMReply:
        client = await self._client()
        body = self._body(messages, max_tokens, stream=False)
        try:
            resp = await client.post(
                f"{self.base_url}/chat/completions",
                json=body,
                headers=self._headers(),
                timeout=self._timeout(timeout),
            )
        except httpx.TimeoutException as exc:
            raise LLMError(f"the synthesis endpoint timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"the synthesis endpoint failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise LLMError(_error_message(resp.status_code, resp.text), status=resp.status_code)
        try:
            data = resp.json()
        except ValueError as exc:
            raise LLMError("the synthesis endpoint returned a body that is not JSON") from exc
        return _parse_completion(data, self.model, body)

    def stream(self, messages: Sequence[dict[str, str]], *, max_tokens: int, timeout: float) -> ChatStream:
        return ChatStream(self, self._body(messages, max_tokens, stream=True), timeout)


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=False)


def _error_message(status: int, text: str) -> str:
    detail = text[:_ERROR_BODY_CHARS]
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            detail = str(err["message"])[:_ERROR_BODY_CHARS]
        elif isinstance(err, str):
            detail = err[:_ERROR_BODY_CHARS]
    except (ValueError, AttributeError):
        pass
    return f"the synthesis endpoint answered HTTP {status}: {detail}"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers send content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _prompt_text(body: Mapping[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def _usage(usage: Any, prompt: str, text: str) -> tuple[int, int, dict[str, Any]]:
    if isinstance(usage, dict) and ("prompt_tokens" in usage or "completion_tokens" in usage):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), {}
    return estimate_tokens(prompt), estimate_tokens(text), {"usage_estimated": True}


def _parse_completion(data: Any, model: str, body: Mapping[str, Any]) -> LLMReply:
    if not isinstance(data, dict):
        raise LLMError("the synthesis endpoint returned an unexpected body")
    if data.get("error"):  # some gateways answer 200 with an error object
        raise LLMError(_error_message(200, json.dumps(data)))
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMError("the synthesis endpoint returned no choices")
    choice = choices[0]
    message = choice.get("message")
    text = _content_text(message.get("content")) if isinstance(message, dict) else ""
    inp, out, extra = _usage(data.get("usage"), _prompt_text(body), text)
    return LLMReply(
        text=text,
        model=str(data.get("model") or model),
        input_tokens=inp,
        output_tokens=out,
        finish_reason=choice.get("finish_reason"),
        extra=extra,
    )


class ChatStream:
    """Text deltas of one streamed chat completion; ``result`` once it has ended.

    Close it (``aclose()``) when abandoning it early: that closes the HTTP response.
    """

    def __init__(self, llm: OpenAICompatibleLLM, body: dict[str, Any], timeout: float) -> None:
        self._llm = llm
        self._body = body
        self._timeout = timeout
        self._gen = self._run()
        self.result: LLMReply | None = None
        self.finish_reason: str | None = None

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def _run(self) -> AsyncGenerator[str, None]:
        llm = self._llm
        client = await llm._client()
        parts: list[str] = []
        model = llm.model
        usage: Any = None
        done = False
        try:
            async with client.stream(
                "POST",
                f"{llm.base_url}/chat/completions",
                json=self._body,
                headers=llm._headers(),
                timeout=llm._timeout(self._timeout),
            ) as resp:
                if resp.status_code != 200:
                    raw = await resp.aread()
                    raise LLMError(
                        _error_message(resp.status_code, raw.decode("utf-8", "replace")),
                        status=resp.status_code,
                    )
                async for event, data in _sse_events(resp.aiter_lines()):
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise LLMError("the synthesis stream sent an event that is not JSON") from exc
                    if not isinstance(chunk, dict):
                        continue
                    if event == "error" or chunk.get("error"):
                        raise LLMError(_error_message(200, data))
                    model = str(chunk.get("model") or model)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        piece = _content_text(delta.get("content")) if isinstance(delta, dict) else ""
                        if choice.get("finish_reason"):
                            self.finish_reason = str(choice["finish_reason"])
                        if piece:
                            parts.append(piece)
                            yield piece
        except httpx.TimeoutException as exc:
            raise LLMError(f"the synthesis stream timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"the synthesis stream failed: {type(exc).__name__}: {exc}") from exc
        if not done and self.finish_reason is None:
            raise LLMError("the synthesis stream ended before the answer was complete")
        text = "".join(parts)
        inp, out, extra = _usage(usage, _prompt_text(self._body), text)
        self.result = LLMReply(
            text=text,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            finish_reason=self.finish_reason,
            extra=extra,
        )


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """(event name, data) per server-sent event; comments (keep-alives) skipped."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event, "\n".join(data)


# -- configuration ------------------------------------------------------------------


def llm_from_settings(
    settings: Settings | SynthesisSettings,
    *,
    proxy_address: str | None = None,
    env: Mapping[str, str] | None = None,
) -> LLM | None:
    """The synthesis model the settings describe, or None (with a warning) if none is.

    * ``synthesis_mode`` off: None.
    * ``synthesis_base_url`` set: that endpoint, with ``synthesis_api_key`` (or, for an
      ``openrouter.ai`` / ``api.openai.com`` base URL without one, ``OPENROUTER_API_KEY``
      / ``OPENAI_API_KEY``) and ``synthesis_model`` (default: the Gemini Flash Lite id on
      OpenRouter; required elsewhere).
    * otherwise, with ``OPENROUTER_API_KEY`` set: OpenRouter and
      ``synthesis_model`` or ``google/gemini-2.5-flash-lite``.

    ``proxy_address`` is where the cacheback proxy running this engine listens: a base
    URL reaching it raises ConfigError (synthesis would loop through the proxy).
    """
    s = settings.synthesis if isinstance(settings, Settings) else settings
    if s.synthesis_mode == "off":
        return None
    env = os.environ if env is None else env
    base = s.synthesis_base_url
    key = s.synthesis_api_key
    if base:
        host = _host(base)
        if not host or urlsplit(base).scheme not in ("http", "https"):
            raise ConfigError(f"synthesis_base_url must be an http(s) URL, not {base!r}")
        if proxy_address and same_endpoint(base, proxy_address):
            raise ConfigError(
                "synthesis_base_url points at this cacheback proxy: synthesis needs a real model endpoint"
            )
        if not key:
            if is_openrouter_host(host):
                key = env.get("OPENROUTER_API_KEY")
            elif is_openai_host(host):
                key = env.get("OPENAI_API_KEY")
        if not key:
            log.warning(
                "synthesis disabled: no API key for the synthesis endpoint",
                host=host,
                hint="set synthesis_api_key (CACHEBACK_SYNTHESIS_API_KEY)",
            )
            return None
        model = s.synthesis_model or (DEFAULT_OPENROUTER_MODEL if is_openrouter_host(host) else None)
        if not model:
            log.warning(
                "synthesis disabled: no synthesis_model for the synthesis endpoint",
                host=host,
                hint="set synthesis_model (CACHEBACK_SYNTHESIS_MODEL)",
            )
            return None
        if urlsplit(base).scheme == "http" and host not in _LOOPBACK:
            log.warning("the synthesis API key is sent over plain http", host=host)
        return OpenAICompatibleLLM(base_url=base, api_key=key, model=model)
    if key:
        # Never send an explicit key to a default host it was not configured for.
        log.warning("synthesis_api_key is ignored without synthesis_base_url")
    router_key = env.get("OPENROUTER_API_KEY")
    if router_key:
        return OpenAICompatibleLLM(
            base_url=OPENROUTER_BASE_URL,
            api_key=router_key,
            model=s.synthesis_model or DEFAULT_OPENROUTER_MODEL,
            headers={"x-title": "cacheback"},
        )
    log.warning(
        "synthesis disabled: no synthesis endpoint configured",
        synthesis_mode=s.synthesis_mode,
        hint="set OPENROUTER_API_KEY, or synthesis_base_url and synthesis_api_key",
    )
    return None
