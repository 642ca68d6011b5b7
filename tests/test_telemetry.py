"""OpenTelemetry: a root span per request with the tier, and a child span per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cacheback import AsyncSemanticCache

pytestmark = pytest.mark.anyio

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    # The global provider can be set once per process; later sets are ignored with a warning.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)


async def test_spans_per_request_and_stage(cache_dir: Path, embedder: Any) -> None:
    async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        await cache.populate("What is the speed of sound?", "About 343 m/s in air.")
        _EXPORTER.clear()
        await cache.lookup("What's the speed of sound?")
        await cache.lookup("How do I convert USD to EUR?")
    spans = _EXPORTER.get_finished_spans()
    roots = [s for s in spans if s.name == "cacheback.request"]
    assert len(roots) == 2
    hit, miss = sorted(roots, key=lambda s: s.start_time or 0)
    assert hit.attributes is not None and miss.attributes is not None
    assert hit.attributes["cacheback.tier"] == "verbatim"
    assert float(hit.attributes["cacheback.similarity"]) >= 0.92  # type: ignore[arg-type]
    assert int(hit.attributes["cacheback.entry_id"]) >= 1  # type: ignore[call-overload]
    assert miss.attributes["cacheback.tier"] == "miss"
    children = [s for s in spans if s.parent is not None and s.parent.span_id == hit.context.span_id]
    names = {s.name for s in children}
    assert {
        "cacheback.normalize",
        "cacheback.embed_batcher",
        "cacheback.vector_search",
        "cacheback.tier_router",
    } <= names
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert hit.start_time is not None and hit.end_time is not None
        assert hit.start_time <= child.start_time <= child.end_time <= hit.end_time + 1_000_000


async def test_logs_never_contain_the_query(cache_dir: Path, embedder: Any) -> None:
    from _store_helpers import capture_logs

    with capture_logs() as logs:
        async with AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
            await cache.populate("my secret medical question", "answer")
            await cache.lookup("my secret medical question")
    assert logs  # the request events were emitted
    assert all("secret" not in str(event) for event in logs)
