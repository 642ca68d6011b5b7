"""AsyncEngine: owns the store, the embedder and the pipeline; everything else is a facade.

normalize → embed_batcher → negative_gate → vector_search → tier_router
    → (synthesizer → upstream | upstream | reply) ; fills → persister (write-behind)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from cacheback._logging import get_logger

from ..core._accounting import CostAccounting, price_table, synthesized
from ..core._call import Answer, UpstreamCall
from ..core._embedder_status import NOT_GIVEN, NoEmbedder, embedder_reason
from ..core._errors import CachebackError, ConfigError, EngineClosed, StoreError
from ..core._feedback import ServedHits
from ..core._hotcache import HotCache
from ..core._job import Job
from ..core._pending import PendingEntries
from ..core._ports import LLM, Embedder, MissPredictor, Store
from ..core._retry_buffer import RetryBuffer
from ..core._routing import VerbatimRule, cosine_rule
from ..core._settings import Settings
from ..core._stage import EngineState, Stage, StageContext
from ..core._stats import Stats
from ..core._telemetry import TracingObserver
from ..core._text_hash import LARGE_TEXT_CHARS, large_text_hash
from ..core._types import (
    LookupRequest,
    NewEntry,
    Outcome,
    Tier,
    Vector,
    clean_text,
    has_lone_surrogate,
    match_text,
    scope_id,
    text_hash,
)
from ..stages.indexer import Indexer
from ..stages.persister import Barrier, Fill, Persister
from ..stages.upstream import Upstream as UpstreamStage
from ._admin import EngineAdmin
from ._blocklist import EngineBlocklist
from ._defaults import Defaults, installed_defaults
from ._pipeline import Pipeline
from ._recovery import StoreRecovery
from ._speculation import build_predictor, teach_stored
from ._verifier import HitVerifier
from ._wiring import build_graph, build_indexer, build_persister

log = get_logger("cacheback.engine")

#: Why no embedder runs when the installed default factory returned a bare None.
_UNSAID = "the default embedder factory returned none (it gave no reason): exact matches only"


def default_verbatim_rule(guard: bool) -> VerbatimRule:
    if not guard:
        return cosine_rule
    from ..guard import verbatim_rule

    return verbatim_rule()  # reads the guard's scorer file: called on a worker thread


_RETRY_SLICE_S = 0.5  # of each background second, at most this long handing kept answers on


class AsyncEngine:
    """The cache engine. Use as ``async with AsyncEngine(settings) as engine``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        embedder: Embedder | str | None = "auto",
        llm: LLM | None = None,
        verbatim_rule: VerbatimRule | None = None,
        defaults: Defaults | None = None,
    ) -> None:
        """``defaults`` builds what is not given (the embedded store, the MiniLM embedder, a
        cheap model from the settings); the package installs its own (``_defaults``)."""
        self._state = EngineState(settings or Settings.from_env(), cosine_rule)
        self._defaults = defaults
        self._store_arg = store
        self._embedder_arg = embedder
        self.llm = llm
        self._owns_llm = False  # built from settings at open (llm_from_settings): closed with us
        self._rule_arg = verbatim_rule
        self.stats = Stats()
        self.accounting = CostAccounting(self.stats)
        self.hot = HotCache(self.settings.storage.hot_cache_size)
        self.pending = PendingEntries()  # answers returned but not yet indexed by the store
        self.served = ServedHits()  # the latest hits per entry, for feedback that names only the entry
        self.verifier = HitVerifier(self)  # sampled checks of paraphrase hits (feedback_verify_rate)
        self.unwritten = RetryBuffer(self.settings.storage.write_retry_buffer)  # kept through an outage
        self.indexer: Indexer | None = None
        self._persister: Persister | None = None
        self.blocklist = EngineBlocklist(self, self._state)
        self.admin = EngineAdmin(self)
        self.recovery = StoreRecovery(self._store_reopened)
        self.store: Store | None = None
        self.embedder: Embedder | None = None
        self.miss_predictor: MissPredictor | None = None  # speculative_upstream
        self._embedder_absent: str | None = "not loaded yet: the engine has not opened"
        self._pipeline: Pipeline | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop: anyio.Event | None = None
        self._open_lock: anyio.Lock | None = None
        self._limiter = anyio.CapacityLimiter(max(1, self.settings.embedding.embed_threads))
        self._stages: dict[str, Stage] = {}
        self._loop_token: Any = None
        self._loop_thread = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Jobs answered from memory on other threads, whose bookkeeping the loop does.
        self._settled_elsewhere: deque[Job] = deque()
        self._drain_posted = False
        self.opened_in_s = 0.0
        # Extra sections of admin.stats() the surfaces add (the media embedders), by name.
        self.describers: dict[str, Callable[[], Any]] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> AsyncEngine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def loop_token(self) -> Any:
        """The event loop's token, for calls back into the engine from other threads."""
        return self._loop_token

    @property
    def settings(self) -> Settings:
        return self._state.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._state.settings = value

    @property
    def negative_entries(self) -> int:
        return self._state.negatives

    @property
    def embed_limiter(self) -> anyio.CapacityLimiter:
        return self._limiter

    @property
    def verbatim_rule(self) -> VerbatimRule:
        return self._state.verbatim_rule

    @property
    def running(self) -> bool:
        return self._pipeline is not None

    async def open(self) -> None:
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._pipeline is None:
                await self._open()

    async def _open(self) -> None:
        t0 = time.perf_counter()
        s = self.settings
        self._loop_token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()
        defaults = self._defaults or installed_defaults()
        if self._embedder_arg == "auto":
            loaded = await anyio.to_thread.run_sync(defaults.embedder, s)
            self.embedder = None if isinstance(loaded, NoEmbedder) else loaded
            self._embedder_absent = loaded.reason if isinstance(loaded, NoEmbedder) else _UNSAID
        elif isinstance(self._embedder_arg, str):
            raise ConfigError("embedder must be 'auto', None or an Embedder")
        else:
            self.embedder, self._embedder_absent = self._embedder_arg, NOT_GIVEN
        if self._store_arg is None:
            dim = self.embedder.dim if self.embedder is not None else 384
            self.store = defaults.store(s, dim)
        else:
            self.store = self._store_arg
        try:
            await self.store.open()
        except ConfigError:
            raise
        except (CachebackError, OSError) as exc:
            # Pass-through until the store is back (retried with backoff in the background).
            self.recovery.open_failed(exc)
        else:
            await self._load_store_state()
        if self._rule_arg is not None:
            self._state.verbatim_rule = self._rule_arg
        else:  # the guard's factory reads its scorer file
            guard = s.matching.guard_enabled
            self._state.verbatim_rule = await anyio.to_thread.run_sync(default_verbatim_rule, guard)
        self.accounting.prices = await anyio.to_thread.run_sync(price_table, s.observability)
        if self.llm is None and s.synthesis.synthesis_mode != "off":
            self.llm = defaults.llm(s)
            self._owns_llm = self.llm is not None

        self.miss_predictor = await build_predictor(s, self.embedder)
        store = self.store
        ctx = StageContext(
            state=self._state,
            hot=self.hot,
            store=store,
            stats=self.stats,
            accounting=self.accounting,
            embedder=self.embedder,
            embed_limiter=self._limiter,
            llm=self.llm,
            store_answer=self._store_answer,
            queue_depth=self.queue_depth,
            pending=self.pending,
            store_usable=self.store_usable,
            retry_write=self.unwritten.add,
            miss_predictor=self.miss_predictor,
        )
        self.indexer = build_indexer(ctx)
        persister = self._persister = build_persister(ctx, self.indexer)
        stages, edges = build_graph(ctx)
        self._stages = {st.name: st for st in stages}
        pipeline = Pipeline(
            stages,
            edges=edges,
            observer=TracingObserver(self.stats, log_content=s.observability.log_content),
            sink=persister,
            queue_size=s.pipeline.queue_size,
        )
        # The pipeline's task groups live in a host task of their own, so the engine can be
        # opened lazily from any request task and closed from any other.
        self._stop = anyio.Event()
        started = anyio.Event()
        self._host = asyncio.get_running_loop().create_task(self._host_main(pipeline, self.indexer, started))
        await started.wait()
        if self._host.done():
            await store.close()
            self._host.result()  # re-raises what stopped the host
            raise EngineClosed("the engine stopped while opening")
        self._pipeline = pipeline
        self.opened_in_s = time.perf_counter() - t0
        log.info(
            "engine opened",
            seconds=round(self.opened_in_s, 3),
            embedder=self.embedder.name if self.embedder else None,
            embedder_reason=self.embedder_reason(),
        )

    async def _host_main(self, pipeline: Pipeline, indexer: Indexer | None, started: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as outer:
                if indexer is not None:  # outlives the pipeline: the last fills queue rows for it
                    outer.start_soon(indexer.run)
                async with pipeline, anyio.create_task_group() as tg:
                    tg.start_soon(self._background)
                    tg.start_soon(self.verifier.run)
                    if self.miss_predictor is not None:
                        tg.start_soon(self._teach_predictor, self.miss_predictor)
                    started.set()
                    assert self._stop is not None
                    await self._stop.wait()
                    tg.cancel_scope.cancel()
                # leaving the pipeline drained in-flight jobs and flushed the persister
                if indexer is not None:
                    await indexer.drain()  # bounded: what is left is caught up on next open
                outer.cancel_scope.cancel()
        except BaseException:
            if self._pipeline is not None:
                # Cancelled without aclose() (the event loop is shutting down): still
                # release the store, so its threads do not keep the process alive.
                self._pipeline = None
                self._host = None
                await self._release()
            raise
        finally:
            started.set()

    async def _teach_predictor(self, predictor: MissPredictor) -> None:
        if self.store is None:
            return
        try:
            await teach_stored(predictor, self.store.maintenance)
        except Exception as exc:  # only speed depends on it: never fail the engine for it
            log.warning("could not teach the miss predictor the stored questions", error=repr(exc))

    async def aclose(self, *, grace_s: float | None = None) -> None:
        """Drain in-flight requests, flush the persister and counters, close the store.

        ``grace_s``: upstream calls still running after that many seconds are cancelled
        (their callers get ``UpstreamCancelled``), so a hung provider cannot hold the close."""
        if self._pipeline is None or self._host is None:
            return
        self._drain_settled()  # the bookkeeping of hits answered on other threads
        if grace_s is not None:
            with anyio.move_on_after(grace_s):
                await self._pipeline.idle()
            upstream = self._stages.get("upstream")
            if isinstance(upstream, UpstreamStage):
                upstream.cancel_calls()
        self._pipeline = None
        host, self._host = self._host, None
        if self._stop is not None:
            self._stop.set()
        try:
            await host
        finally:
            await self._release()

    async def _release(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.store is not None:
                await self._flush_counters()
                await self.store.close()
            if self._owns_llm and self.llm is not None:
                llm, self.llm, self._owns_llm = self.llm, None, False
                closer = getattr(llm, "aclose", None)
                if closer is not None:
                    await closer()

    async def _load_store_state(self) -> None:
        """What the engine reads from a store it has just opened: counters, blocklist size."""
        assert self.store is not None
        try:
            self.stats.base = await self.store.counters.load()
            self._state.negatives = await self.store.blocklist.count()
        except CachebackError as exc:  # the store marked itself broken: recovery takes over
            log.warning("reading the store's state failed", error=repr(exc))

    async def _store_reopened(self) -> None:
        await self._load_store_state()
        self.forget_all()  # the store may be a fresh one: memory must not outlive it

    def store_usable(self) -> bool:
        """False while the store is broken or unopened (requests then pass through)."""
        return self.recovery.usable(self.store)

    async def _catch_up_vectors(self) -> None:
        """Embed and index rows stored without a vector (a crash, another process)."""
        if self.indexer is None:
            return
        try:
            await self.indexer.catch_up()
        except Exception as exc:
            log.warning("vector catch-up failed", error=repr(exc))

    async def _background(self) -> None:
        if self.store_usable():
            await self._catch_up_vectors()
        last_sweep = time.monotonic()
        while True:
            await anyio.sleep(1.0)
            await self.recovery.maybe_reopen(self.store)
            if not self.store_usable():
                continue
            await self._flush_counters()
            await self._write_unwritten()
            self._write_touches()
            if self.store is not None:
                try:
                    await self.store.changes.sync()
                    # Blocklist entries another process (the CLI, a proxy worker) added:
                    # refresh() invalidates memory, which must not replay what is now blocked.
                    await self.blocklist.refresh()
                except Exception as exc:
                    log.warning("store sync failed", error=repr(exc))
            if time.monotonic() - last_sweep >= self.settings.pipeline.sweep_interval_s:
                last_sweep = time.monotonic()
                try:
                    await self.admin.evict_expired()
                except Exception as exc:
                    log.warning("background sweep failed", error=repr(exc))
                await self._catch_up_vectors()

    async def _write_unwritten(self) -> None:
        """Queue the answers kept through an outage for writing, now the store is back: as
        fast as the persister takes them for up to ``_RETRY_SLICE_S``, the rest next time."""
        from ..stages.persister import Fill

        pipeline = self._pipeline
        if pipeline is None or not len(self.unwritten):
            return
        items = self.unwritten.take(time.time(), len(self.unwritten))
        log.info("writing answers kept through a store outage", count=len(items))
        give_up_at = time.monotonic() + _RETRY_SLICE_S
        for n, item in enumerate(items):
            pending = self.pending.add(item.entry)
            fill = Fill(item.entry, self.hot.generation, pending=pending, attempts=item.attempts)
            while not pipeline.sink_nowait(fill):  # the write queue is full: let it drain
                if time.monotonic() > give_up_at or not self.store_usable() or self._pipeline is None:
                    self.pending.done([pending])
                    self.unwritten.put_back(items[n:])
                    return
                await anyio.sleep(0.005)
            entry = item.entry  # an exact hit at once, as a fresh answer is
            self.hot.put(
                entry.scope, entry.query_hash, pending.cache_entry(), fill.generation, pending=pending
            )

    def _write_touches(self) -> None:
        """Have the persister write the LRU touches it gathered (it batches them)."""
        if self._pipeline is not None:
            self._pipeline.sink_nowait(Barrier(anyio.Event()))

    async def _flush_counters(self) -> None:
        deltas = self.stats.take_pending()
        if not deltas or self.store is None:
            return
        try:
            await self.store.counters.add(deltas)
        except Exception as exc:
            log.warning("counter flush failed", error=repr(exc))
            for k, v in deltas.items():
                self.stats.pending[k] = self.stats.pending.get(k, 0.0) + v
        else:
            for k, v in deltas.items():
                self.stats.base[k] = self.stats.base.get(k, 0.0) + v
                self.stats.session[k] = self.stats.session.get(k, 0.0) - v

    # -- requests ------------------------------------------------------------------

    def _require(self) -> tuple[Pipeline, Store]:
        if self._pipeline is None or self.store is None:
            raise EngineClosed("the cache engine is not open (use 'async with' or open())")
        return self._pipeline, self.store

    def make_job(
        self, request: LookupRequest, call: UpstreamCall | None = None, *, query_hash: str | None = None
    ) -> Job:
        ns = request.namespace or self.settings.storage.namespace
        return Job(
            request=request,
            namespace=ns,
            scope=scope_id(ns, request.scope),
            query_hash=query_hash if query_hash is not None else text_hash(request.query),
            call=call,
            generation=self.hot.generation,
        )

    async def run(self, request: LookupRequest, call: UpstreamCall | None = None) -> Job:
        """Send a request through the pipeline; returns the finished job. ``call`` is how
        to ask the provider on a miss (None: a lookup only)."""
        pipeline, _ = self._require()
        job = self.make_job(request, call, query_hash=await large_text_hash(request.query))
        await pipeline.submit(job)
        self._finished(job)
        return job

    def answer_from_memory(self, request: LookupRequest, call: UpstreamCall | None = None) -> Job | None:
        """The finished job of a repeat whose answer memory holds, settled on the calling
        thread (a sync client's caller: no hop to the engine's loop and back); None: ``run``
        decides. The same settling as ``run``'s; its bookkeeping (metrics, cost savings,
        the LRU touch) is handed to the loop without waiting for it."""
        pipeline = self._pipeline
        loop = self._loop
        # A large text is hashed once, by ``run`` (off the loop), not here and there again.
        if pipeline is None or loop is None or len(request.query) > LARGE_TEXT_CHARS:
            return None
        job = self.make_job(request, call)
        if not pipeline.settle_now(job):
            return None
        job.ended = time.perf_counter()
        self._settled_elsewhere.append(job)
        if not self._drain_posted:  # one wake-up of the loop for a burst of such hits
            self._drain_posted = True
            try:
                loop.call_soon_threadsafe(self._drain_settled)
            except RuntimeError:  # the loop is gone (closing): only the bookkeeping is lost
                self._settled_elsewhere.clear()
                self._drain_posted = False
        return job

    def _drain_settled(self) -> None:
        self._drain_posted = False  # first: a job appended from now on posts a drain again
        pipeline = self._pipeline
        while self._settled_elsewhere:
            job = self._settled_elsewhere.popleft()
            if pipeline is not None:
                pipeline.complete(job)
            self._finished(job)

    def _finished(self, job: Job) -> None:
        """After a job: its costs, the decision to remember, the LRU touch of its entry."""
        self.accounting.account(job)
        outcome = job.outcome
        if outcome is not None and outcome.tier is Tier.VERBATIM and outcome.entry is not None:
            # Remember the decision so the next identical query is answered from memory, as
            # the verbatim hit it is (another text's entry, at this similarity). Under the
            # job's own generation: an invalidation while it ran must not be outlived.
            self.hot.put(
                job.scope,
                job.query_hash,
                outcome.entry,
                job.generation,
                tier=Tier.VERBATIM,
                similarity=outcome.similarity if outcome.similarity is not None else 0.0,
                guard_reasons=outcome.guard_reasons,
            )
        if outcome is not None and outcome.entry is not None and outcome.hit and outcome.entry.id > 0:
            if self._persister is not None:
                self._persister.touch(outcome.entry.id)
            self.served.record(outcome.entry.id, outcome.tier.value, outcome.similarity)
            if outcome.tier is Tier.VERBATIM:
                self.verifier.offer(outcome.entry, job.request.query, outcome.similarity)

    async def lookup(self, request: LookupRequest) -> Outcome:
        job = await self.run(request)
        if job.error is not None:
            raise job.error
        assert job.outcome is not None
        return _with_latency(job.outcome, job.elapsed_ms())

    def _store_answer(self, job: Job, answer: Answer | None) -> None:
        """Account a job's provider (or synthesized) answer and queue it for writing
        (write-behind); None: account only. Called from any thread (a sync client reads
        its stream on its own)."""
        storable = job.request.store and job.request.cacheable
        entry = None
        # An answer SQLite cannot encode is not stored: replaying it altered would not
        # be the provider's answer, and one bad row would fail its whole write batch.
        if answer is not None and storable and not has_lone_surrogate(answer.text):
            if self.miss_predictor is not None:
                self.miss_predictor.learn(job.scope, job.request.query)
            entry = self._new_entry(
                job.request,
                job.scope,
                job.query_hash,
                job.vector,
                answer.text,
                answer.payload,
                self.accounting.entry_metadata(job),
            )

        def send() -> None:
            if not synthesized(job):  # a stream's usage is complete by now
                self.accounting.record_upstream(job, Tier.UPSTREAM if job.request.cacheable else Tier.BYPASS)
            if entry is None:
                return
            if not self.store_usable():  # degraded: written when the store is back
                self.unwritten.add(entry)
                return
            # Searchable at once: exact through memory, semantic through the pending set.
            pending = self.pending.add(entry)
            fill = Fill(entry, job.generation, pending=pending)
            if self._pipeline is None or not self._pipeline.sink_nowait(fill):
                self.pending.done([pending])
                self.unwritten.add(entry)  # the write queue is full (a slow store): next second
                return
            self.hot.put(
                entry.scope, entry.query_hash, pending.cache_entry(), job.generation, pending=pending
            )

        if threading.get_ident() == self._loop_thread:
            send()
            return
        try:
            anyio.from_thread.run_sync(send, token=self._loop_token)
        except RuntimeError:  # the engine's loop is gone: nothing left to write to
            self.stats.count("fills_dropped")

    def _new_entry(
        self,
        request: LookupRequest,
        scope: str,
        query_hash: str,
        vector: Vector | None,
        answer: str,
        payload: bytes | None,
        metadata: dict[str, Any] | None = None,
    ) -> NewEntry:
        now = time.time()
        ttl = request.ttl if request.ttl is not None else self.settings.storage.cache_ttl
        meta: dict[str, Any] = {"namespace": request.namespace or self.settings.storage.namespace}
        if request.scope:  # kept so that `cacheback import --namespace` can re-scope an export
            meta["scope_key"] = request.scope
        meta.update(metadata or {})
        return NewEntry(
            scope=scope,
            # Storable text (SQLite cannot encode lone surrogates); the key is the hash of
            # the original, so only the very same text hits it exactly.
            query=clean_text(request.query),
            query_hash=query_hash,
            answer=answer,
            vector=vector,
            created_at=now,
            expires_at=now + ttl,
            payload=payload,
            metadata=meta,
        )

    async def embed(self, texts: list[str]) -> Vector | None:
        if self.embedder is None:
            return None
        clean = [match_text(t) for t in texts]
        return await anyio.to_thread.run_sync(self.embedder.embed, clean, limiter=self._limiter)

    async def populate(
        self,
        request: LookupRequest,
        answer: str,
        *,
        payload: bytes | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Store an answer now (written through, visible to the next lookup)."""
        if has_lone_surrogate(answer):
            raise ConfigError("the answer contains lone surrogates (invalid Unicode) and cannot be stored")

        pipeline, _ = self._require()
        job = self.make_job(request, query_hash=await large_text_hash(request.query))
        vecs = await self.embed([request.query])
        vector = vecs[0] if vecs is not None else None
        fill = Fill(
            self._new_entry(request, job.scope, job.query_hash, vector, answer, payload, metadata),
            self.hot.generation,
            anyio.Event(),
        )
        await pipeline.sink(fill)
        assert fill.done is not None
        await fill.done.wait()
        if not fill.ids:
            raise StoreError("the store did not accept the entry")
        return fill.ids[0]

    async def flush(self) -> None:
        """Wait until every answer queued for writing so far is in the store."""
        pipeline, _ = self._require()
        await pipeline.settled()  # answers returned a moment ago are queued first
        barrier = Barrier(anyio.Event())
        await pipeline.sink(barrier)
        await barrier.done.wait()

    # -- management (engine.admin, engine.blocklist) ---------------------------------

    def forget_all(self) -> None:
        """Entries were deleted: nothing remembered in memory may be replayed any more."""
        self.hot.bump()
        self.pending.clear()

    def embedder_reason(self) -> str | None:
        """Why no text embedder runs (then exact matches only), or why the one that runs is
        a fallback (the NumPy MiniLM); None when the configured one runs (stats, /health)."""
        return embedder_reason(self.embedder, self._embedder_absent)

    def health(self) -> dict[str, Any]:
        """Whether the cache works: ``ok``, or ``degraded`` with the reason (never raises)."""
        return self.recovery.status(self.store)

    def runtime_stats(self) -> dict[str, Any]:
        """The pipeline's own figures for stats: queue depths, failures, coalesced calls."""
        pipeline = self._pipeline
        up = self._stages.get("upstream")
        return {
            "queues": pipeline.queue_depths() if pipeline is not None else {},
            "cache_failures": pipeline.cache_failures if pipeline is not None else 0,
            "coalesced": getattr(up, "coalesced", 0),
            # answers the store could not take (an outage), written when it is back
            "unwritten": self.unwritten.describe(),
        }

    async def settled(self) -> None:
        """Wait until the answers already returned are queued for writing and counted in
        the stats (that work runs just after their callers got them)."""
        if self._pipeline is not None:
            await self._pipeline.settled()

    def queue_depths(self) -> dict[str, int]:
        pipeline, _ = self._require()
        return pipeline.queue_depths()

    def queue_depth(self, stage: str) -> int:
        """Jobs waiting in one stage's inbox (0 when the engine is not running)."""
        return self._pipeline.queue_depth(stage) if self._pipeline is not None else 0


def _with_latency(outcome: Outcome, latency_ms: float) -> Outcome:
    # Built field by field: ``dataclasses.replace`` walks the fields' metadata on every
    # call, several times the cost of the constructor, once per lookup.
    # (tests/test_engine.py checks that every field is carried over.)
    o = outcome
    return Outcome(
        tier=o.tier, similarity=o.similarity, entry=o.entry, candidates=o.candidates,
        negative=o.negative, guard_reasons=o.guard_reasons, scope=o.scope,
        query_hash=o.query_hash, vector=o.vector, latency_ms=latency_ms, detail=o.detail,
    )
