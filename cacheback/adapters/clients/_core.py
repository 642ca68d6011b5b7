"""Everything the cached clients do that is not I/O: per-request controls, keys, turning
engine outcomes into SDK objects. The sync and async clients are thin shells over it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from cacheback._logging import get_logger

from ...core._call import Answer, Streamed, UpstreamCall, Usage
from ...core._errors import CachebackBlocked, CachebackError, ConfigError
from ...core._job import Job
from ...core._ports import LLM, Embedder, Store
from ...core._settings import Settings
from ...core._types import LookupRequest, Tier
from ...engine._engine import AsyncEngine
from ..embedders._media_tier import MediaTier
from ..providers import Codec, RequestKey, StreamAccumulator, mark
from ..providers._common import no_request
from ..providers._key_memo import KEYS
from ._stream_check import checked
from ._threads import UPSTREAM_THREADS, run_blocking

log = get_logger("cacheback.client")

#: The per-request control argument, removed before the request goes upstream.
CONTROL_KWARG = "cacheback"
_CONTROL_KEYS = {"bypass", "no_store", "ttl", "namespace"}
_RAW_HEADER = "x-stainless-raw-response"

NegativeHook = Callable[[dict[str, Any]], Any]

#: How long closing waits for calls in flight before it cancels their upstream calls.
CLOSE_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class ClientOptions:
    on_negative_hit: str | NegativeHook = "raise"
    cache_enabled: bool = True
    ignore_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.on_negative_hit) and self.on_negative_hit not in ("raise", "skip"):
            raise ConfigError("on_negative_hit must be 'raise', 'skip' or a callable")


@dataclass(slots=True)
class Prepared:
    """A request ready for the engine (``request`` is None: go straight upstream)."""

    spec: Codec
    kwargs: dict[str, Any]
    key: RequestKey | None
    request: LookupRequest | None
    stream: bool
    model: str | None
    reason: str | None = None
    helper: bool = False  # messages.stream(): the answer is a stream manager
    started: float = field(default_factory=time.perf_counter)


def parse_controls(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{CONTROL_KWARG}= must be a dict of {sorted(_CONTROL_KEYS)}")
    unknown = set(raw) - _CONTROL_KEYS
    if unknown:
        raise ConfigError(f"unknown {CONTROL_KWARG} controls: {sorted(unknown)}")
    ttl = raw.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise ConfigError("cacheback ttl must be a positive number of seconds")
    ns = raw.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise ConfigError("cacheback namespace must be a string")
    return dict(raw)


def _is_raw_response(kwargs: Mapping[str, Any]) -> bool:
    headers = kwargs.get("extra_headers") or {}
    return any(str(k).lower() == _RAW_HEADER for k in headers)


class ClientCache:
    """The cache side of one client: settings, the engine and the translation logic."""

    def __init__(
        self,
        settings: Settings,
        options: ClientOptions,
        *,
        embedder: Embedder | str | None = "auto",
        store: Store | None = None,
        llm: LLM | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.engine = AsyncEngine(settings, store=store, embedder=embedder, llm=llm)
        # Near-identical images and clips keyed alike (when an embedder is configured).
        self.media = MediaTier(settings)
        self.engine.describers["embedders"] = lambda: self.media.embedders(self.engine.embedder)
        # What builds this engine again: a forked child needs its own (see _shells.py).
        self.engine_args: dict[str, Any] = {"embedder": embedder, "store": store, "llm": llm}
        self.unavailable: str | None = None
        self.closed = False  # closed for good: never reopened, calls go straight to the SDK
        # The blocking SDK calls of the sync clients run on worker threads: as many at once
        # as the SDK's connection pool allows (anyio's default limiter stops at 40). Threads
        # are only made on demand.
        self.threads = anyio.CapacityLimiter(UPSTREAM_THREADS)
        self._lock: anyio.Lock | None = None

    # -- pure parts ----------------------------------------------------------------

    def prepare(self, spec: Codec, kwargs: dict[str, Any], *, helper: bool = False) -> Prepared:
        kwargs = dict(kwargs)
        controls = parse_controls(kwargs.pop(CONTROL_KWARG, None))
        if helper:
            kwargs["stream"] = True
        stream = bool(kwargs.get("stream"))
        model = kwargs.get("model")
        model = model if isinstance(model, str) else None
        if not self.options.cache_enabled or _is_raw_response(kwargs):
            return Prepared(spec, kwargs, None, None, stream, model, "cache disabled", helper)
        if self.unavailable is not None:
            return Prepared(spec, kwargs, None, None, stream, model, self.unavailable, helper)
        key = KEYS.key(spec, kwargs, self.options.ignore_params)  # a repeat's key is kept
        request = key.lookup_request(
            controls.get("namespace"),
            read=not controls.get("bypass", False),
            store=not controls.get("bypass", False) and not controls.get("no_store", False),
            ttl=controls.get("ttl"),
            check_negative=self.options.on_negative_hit != "skip",
            want_synthesis=self.settings.synthesis.synthesis_mode != "off",
        )
        if controls.get("bypass"):
            request.cacheable = False
            request.bypass_reason = "bypass requested"
        return Prepared(spec, kwargs, key, request, stream, model, helper=helper)

    def deliver(self, job: Job, prep: Prepared, client: Any) -> Any:
        """The SDK object (or stream) for a finished job."""
        if job.error is not None:
            # Coalesced waiters share one failure: each raises its own copy, or they would
            # all write their tracebacks into one object, from several threads at once.
            raise own_copy(job.error) if job.trace.get("coalesced") else job.error
        outcome = job.outcome
        assert outcome is not None
        info = {
            "tier": outcome.tier.value,
            "similarity": None if outcome.similarity is None else round(float(outcome.similarity), 4),
            "entry_id": (outcome.entry_id or None) if outcome.hit else None,
            "latency_ms": round((time.perf_counter() - prep.started) * 1000, 3),
            "modality": prep.key.modality if prep.key is not None else "text",
        }
        if job.degraded:
            info["reason"] = f"cache error in {job.degraded}"
        elif outcome.tier is Tier.BYPASS:
            # Why the cache was skipped ("n>1", "bypass requested", ...), as the proxy says.
            info["reason"] = job.request.bypass_reason or outcome.detail
        if outcome.tier.is_hit and outcome.entry is not None:
            entry = outcome.entry
            # A stored provider response, replayed: it keeps the provider's ids, so
            # previous_response_id / retrieve by them work.
            obj = prep.spec.rebuild(entry.answer, entry.payload, prep.model, prep.kwargs, keep_ids=True)
            mark(obj, True, False, info)
            if prep.helper:
                return replay_manager(client, obj, info, hit=True)
            if prep.stream:
                assert prep.key is not None
                return mark(prep.spec.replay(client, obj, prep.key.stream_usage), True, False, info)
            return obj
        if outcome.tier is Tier.BLOCKED:
            assert outcome.negative is not None
            hook = self.options.on_negative_hit
            if callable(hook):
                return hook(outcome.negative.as_dict())
            raise CachebackBlocked(outcome.negative)
        synthesized = outcome.tier is Tier.SYNTHESIS
        if synthesized:
            assert job.synthesis is not None
            synthesized_answer = self._synthesized(job.synthesis, prep, client)
            if prep.helper:
                return _mark_on_enter(synthesized_answer, True, info)
            return mark(synthesized_answer, False, True, info)
        if job.response is None:  # engine-only outcome (no call made): cannot happen for clients
            raise CachebackError(f"no response for tier {outcome.tier.value}")
        response = job.response
        if isinstance(response, Streamed):
            # The SDK's stream, reading the events the engine reads on their way to cache them.
            response.response._iterator = response.events
            response = response.response
        if job.trace.get("coalesced"):
            info["reason"] = "coalesced"
            # Each waiter gets its own object: the one upstream response rebuilt (its ids: it
            # is that response), or a copy when it could not be stored. _request_id is None,
            # as on a hit: this call sent no request (and a waiter that noticed the answer
            # once it had landed could not know the id anyway).
            if job.answer is not None:
                response = prep.spec.rebuild(
                    job.answer.text, job.answer.payload, prep.model, prep.kwargs, keep_ids=True
                )
            elif hasattr(response, "model_copy"):
                response = no_request(response.model_copy(), "_request_id", "_workspace_id")
        if prep.helper:
            return live_manager(client, response, info)
        return mark(response, False, False, info)

    def _synthesized(self, synthesis: str | AsyncIterator[str], prep: Prepared, client: Any) -> Any:
        """The SDK object for a synthesized answer: whole, or (streaming) the SDK's own
        stream fed by the cheap model's deltas as they arrive."""
        if not isinstance(synthesis, str):
            return self._live(synthesis, prep, client)
        obj = prep.spec.rebuild(synthesis, None, prep.model, prep.kwargs)
        if prep.helper:
            return replay_manager(client, obj, None, hit=False)
        if prep.stream:
            assert prep.key is not None
            return prep.spec.replay(client, obj, prep.key.stream_usage)
        return obj

    def _live(self, deltas: AsyncIterator[str], prep: Prepared, client: Any) -> Any:
        from ..providers._live import SENTINEL, LiveByteStream, live_shape, live_sse, sdk_live_stream

        spec = prep.spec
        template = spec.rebuild(SENTINEL, None, prep.model, prep.kwargs)
        include_usage = bool(prep.key is not None and prep.key.stream_usage)
        shape = live_shape(spec, template, include_usage=include_usage)
        body = LiveByteStream(live_sse(shape, deltas), token=self.engine.loop_token)
        raw = sdk_live_stream(client, spec, body)
        if prep.helper:
            return live_manager(client, raw, None)
        return raw

    def upstream_call(self, prep: Prepared, create: Callable[..., Any], *, blocking: bool) -> UpstreamCall:
        """The provider call of ``prep``: the SDK's own ``create``, run on a worker thread
        when it blocks. It waits at the engine's gate before sending (``_base.py``)."""
        kwargs, stream = prep.kwargs, prep.stream
        threads = self.threads

        async def send() -> Any:
            if blocking:
                response = await run_blocking(partial(create, **kwargs), threads)
            else:
                response = await create(**kwargs)
            # A stream's events are what the SDK object iterates: the engine reads them.
            # (checked: a stream cut short raises instead of ending, _stream_check.py).
            return Streamed(response, checked(response)) if stream else response

        spec = prep.spec
        return UpstreamCall(
            send=send,
            streaming=stream,
            extract=lambda response: (spec.answer(response), spec.usage(response)),
            reader=lambda: _SDKStreamReader(spec.accumulator(), spec.usage),
            early=True,
            abortable=not blocking,  # a call on a worker thread runs to its end if cancelled
        )

    def passthrough(self, response: Any, prep: Prepared) -> Any:
        info = {
            "tier": Tier.BYPASS.value,
            "reason": prep.reason,
            "latency_ms": round((time.perf_counter() - prep.started) * 1000, 3),
            "modality": prep.key.modality if prep.key is not None else "text",
        }
        return mark(response, False, False, info)

    # -- the engine ----------------------------------------------------------------

    async def ensure_open(self) -> AsyncEngine | None:
        if self.engine.running:
            return self.engine
        if self.unavailable is not None or self.closed:
            return None
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self.closed:  # closed while this call waited: the engine must stay closed
                return None
            if not self.engine.running and self.unavailable is None:
                try:
                    await self.engine.open()
                except Exception as exc:  # the cache must never break the caller
                    self.unavailable = f"cache unavailable: {type(exc).__name__}"
                    log.error("cache could not open; passing requests through", error=repr(exc))
                    return None
        return self.engine

    def answer_from_memory(self, prep: Prepared, call: UpstreamCall) -> Job | None:
        """A repeat whose answer the engine's memory holds, answered on the calling thread
        (a sync client's caller: no hop to the engine's loop); None: ``run`` it. Questions
        with media go to ``run``: the media tier decides their scope first."""
        engine = self.engine
        if prep.request is None or not engine.running or (prep.key is not None and prep.key.media):
            return None
        try:
            return engine.answer_from_memory(prep.request, call)
        except CachebackError:  # the full path decides (and degrades) as it does
            return None

    async def run(self, prep: Prepared, call: UpstreamCall) -> Job | None:
        """The engine's finished job, or None: go around the cache. A caller that leaves
        (cancelled, Ctrl-C) takes the upstream call nobody else waits for with it."""
        engine = await self.ensure_open()
        if engine is None or prep.request is None:
            return None
        try:
            key = prep.key
            if key is not None and key.media and prep.request.cacheable and self.media.enabled:
                prep.request.scope = (await self.media.resolve(key)).scope
            return await engine.run(prep.request, call)
        except CachebackError as exc:
            log.warning("cache failed; passing the request through", error=repr(exc))
            engine.stats.count("cache_errors")
            return None

    async def aclose(self) -> None:
        """Flush and close the engine, for good. Calls in flight get a short grace; upstream
        calls still waiting after it are cancelled, so a slow provider cannot hold the close
        (or the interpreter's exit) for the SDK's whole timeout."""
        self.closed = True
        if self._lock is None:
            await self.engine.aclose(grace_s=CLOSE_GRACE_S)
            return
        async with self._lock:  # an engine being opened right now is closed once it is open
            await self.engine.aclose(grace_s=CLOSE_GRACE_S)


def own_copy(exc: BaseException) -> BaseException:
    """A shallow copy of ``exc`` with a traceback of its own. SDK errors take keyword-only
    arguments their ``args`` do not carry, so the copy is made without calling __init__."""
    cls = type(exc)
    try:
        new = cls.__new__(cls)
        new.__dict__.update(exc.__dict__)
        new.args = exc.args
    except (TypeError, AttributeError):  # a C-level exception without a __dict__
        return exc
    new.__cause__, new.__context__ = exc.__cause__, exc.__context__
    return new


def replay_manager(client: Any, message: Any, info: dict[str, Any] | None, *, hit: bool) -> Any:
    """What ``messages.stream(...)`` returns for an answer served from the cache."""
    from ..providers import replay_message_stream_manager

    def on_enter(stream: Any) -> None:
        if info is not None:
            mark(stream, hit, False, info)

    # The manager's own hook sets the stream's _request_id to None (no request was made).
    return replay_message_stream_manager(client, message, on_enter=on_enter)


def live_manager(client: Any, raw: Any, info: dict[str, Any] | None) -> Any:
    """``messages.stream(...)``'s manager over an already open raw stream: a miss's (marked
    with ``info``), or a synthesized answer as the cheap model writes it (``info`` None: no
    provider request, so no request id)."""
    from ..providers import AsyncHookedMessageStreamManager, HookedMessageStreamManager
    from ..providers._stream_replay import Ready

    def on_enter(stream: Any) -> None:
        if info is None:
            no_request(stream, "_request_id", "_workspace_id")
        else:
            mark(stream, False, False, info)

    if hasattr(raw, "__aiter__"):
        return AsyncHookedMessageStreamManager(Ready(raw), on_enter=on_enter)
    return HookedMessageStreamManager(lambda: raw, on_enter=on_enter)


def _mark_on_enter(manager: Any, synthesized: bool, info: dict[str, Any]) -> Any:
    """A stream manager opens its stream on entry: mark the stream then, after the
    manager's own hook (a replay's: no request id)."""
    previous: Callable[[Any], Any] | None = getattr(manager, "_on_enter", None)

    def on_enter(stream: Any) -> None:
        if previous is not None:
            previous(stream)
        mark(stream, False, synthesized, info)

    manager._on_enter = on_enter
    return manager


class _SDKStreamReader:
    """Reads an SDK stream's events into the answer to cache and the call's usage."""

    __slots__ = ("_acc", "_usage")

    def __init__(self, acc: StreamAccumulator, usage: Callable[[Any], Usage]) -> None:
        self._acc = acc
        self._usage = usage

    def feed(self, event: Any) -> None:
        self._acc.feed(event)

    def result(self) -> tuple[Answer | None, Usage]:
        answer, _verdict = self._acc.finish()
        if answer is None:
            return None, {}
        # The stored payload is the whole response rebuilt from the events: its usage too.
        return answer, self._usage(json.loads(answer.payload)) if answer.payload else {}
