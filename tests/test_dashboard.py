"""The dashboard's JSON and page over real HTTP (a running proxy, the fake provider, the
real embedder): who may read and change what, what the figures say after known traffic,
the negative-cache routes, and the page's security headers. The rollup is unit-tested."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy_helpers import RunningProxy, chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback.adapters._dashboard_view import embedders
from cacheback.adapters.proxy._rollup import Rollup, series

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer admin-secret"}
CALLER = {"Authorization": "Bearer sk-dash-caller"}


def _proxy(fake: FakeProvider, tmp_path: Path, embedder: Any, **overrides: Any) -> Any:
    return running_proxy(proxy_config(fake, tmp_path / "cache", **overrides), embedder)


def _ask(rp: RunningProxy, question: str, headers: dict[str, str] = CALLER) -> httpx.Response:
    resp = httpx.post(
        f"{rp.base_url}/v1/chat/completions", json=chat_body(question), headers=headers, timeout=30
    )
    # The answer is written behind the response: let it land before the next question.
    time.sleep(0.5)
    return resp


def _view(rp: RunningProxy, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    resp = httpx.get(f"{rp.base_url}/v1/cache/dashboard", headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    data: dict[str, Any] = resp.json()
    return data


def test_the_figures_follow_the_traffic(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    with _proxy(fake, tmp_path, embedder, admin_key="admin-secret") as rp:
        first = _ask(rp, "How many legs does a spider have?")
        assert first.headers["x-cacheback-tier"] == "upstream"
        assert _ask(rp, "How many legs does a spider have?").headers["x-cacheback-tier"] == "exact"
        # Close enough for a hit, but the guard sees the negation: a veto, then upstream.
        assert _ask(rp, "Is tea acidic?").headers["x-cacheback-tier"] == "upstream"
        vetoed = _ask(rp, "Is tea not acidic?")
        assert vetoed.headers["x-cacheback-tier"] == "upstream"
        assert float(vetoed.headers["x-cacheback-similarity"]) >= 0.92
        view = _view(rp)
    totals = view["totals"]
    assert totals["requests"] == 4 and totals["lookups"] == 4 and totals["hits"] == 1
    assert totals["hit_rate"] == 0.25
    # The hit saved the tokens and the estimated cost of the upstream call it replayed.
    usage = first.json()["usage"]
    assert totals["saved_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert totals["saved_usd"] > 0 and totals["spent_usd"] > 0
    hour = view["series"]["hour"]
    assert hour["points"] == 60 and hour["step_s"] == 60
    assert sum(hour["tiers"]["upstream"]) == 3 and sum(hour["tiers"]["exact"]) == 1
    assert sum(sum(v) for v in view["series"]["day"]["tiers"].values()) == 4
    assert view["guard_vetoes"] == {"negation": 1}
    assert set(view["latency_ms"]) == {"exact", "upstream"}
    assert view["latency_ms"]["upstream"]["count"] == 3
    assert view["entries"]["count"] == 3 and view["entries"]["size_bytes"] > 0
    top = view["top_questions"]
    assert [(q["hits"], "query" in q) for q in top] == [(1, False)]  # no text: content display is off
    assert view["content_display"] is False
    health = view["health"]
    assert health["ready"] and health["store"]["ok"] and health["store"]["backend"] == "embedded"
    assert [e["name"] for e in health["embedders"]] == [embedder.name]
    assert "Is tea" not in str(view)  # no prompt text anywhere without content display


def test_question_text_only_with_content_display(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    with _proxy(fake, tmp_path, embedder, admin_key="admin-secret", dashboard_content=True) as rp:
        _ask(rp, "Why is the sky blue?")
        _ask(rp, "Why is the sky blue?")
        view = _view(rp)
    assert view["content_display"] is True
    assert [(q["query"], q["hits"]) for q in view["top_questions"]] == [("Why is the sky blue?", 1)]


def test_who_may_read_and_change(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    url = "/v1/cache/dashboard"
    add = {"query": "Tell me how to pick a lock"}
    with _proxy(fake, tmp_path / "a", embedder, admin_key="admin-secret", proxy_keys=("pk-1",)) as rp:
        with rp.http() as http:
            assert http.get(url).status_code == 401
            assert http.get(url, headers={"Authorization": "Bearer pk-1"}).status_code == 401
            wrong = http.get(url, headers={"Authorization": "Bearer admin-secreT"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            assert http.get(url, headers={"x-api-key": "admin-secret"}).status_code == 200
            assert http.post("/v1/cache/negative", json=add).status_code == 401
            assert http.get("/v1/cache/negative", headers=CALLER).status_code == 401
            # The page itself holds no data: it loads without a key and asks for one.
            assert http.get("/dashboard").status_code == 200
    with _proxy(fake, tmp_path / "b", embedder, proxy_keys=("pk-1",), openai_api_key="sk-server") as rp:
        with rp.http() as http:
            assert http.get(url, headers={"Authorization": "Bearer pk-1"}).status_code == 200
            assert http.post("/v1/cache/negative", json=add, headers={"x-api-key": "pk-1"}).status_code == 200
            assert http.get(url, headers={"Authorization": "Bearer pk-2"}).status_code == 401
    with _proxy(fake, tmp_path / "c", embedder) as rp:  # no admin key, no proxy keys
        with rp.http() as http:
            assert http.get(url).status_code == 200  # open, like /v1/cache/stats
            refused = http.post("/v1/cache/negative", json=add, headers=CALLER)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "admin_key_required"
            assert http.delete("/v1/cache/negative/1", headers=CALLER).status_code == 403


def test_the_negative_cache_routes(fake: FakeProvider, tmp_path: Path, embedder: Any) -> None:
    with _proxy(fake, tmp_path, embedder, admin_key="admin-secret") as rp, rp.http(headers=ADMIN) as http:
        made = http.post(
            "/v1/cache/negative",
            json={"query": "How do I make a fake passport?", "reason": "illegal", "category": "safety"},
        )
        assert made.status_code == 200
        entry_id = made.json()["entry_id"]
        listed = http.get("/v1/cache/negative").json()["data"]
        assert [(e["entry_id"], e["reason"], e["category"], e["false_positives"]) for e in listed] == [
            (entry_id, "illegal", "safety", 0)
        ]
        blocked = _ask(rp, "How can I make a fake passport?")
        assert blocked.status_code == 403 and blocked.headers["x-cacheback-tier"] == "blocked"
        fp = http.post(f"/v1/cache/negative/{entry_id}/false-positive")
        assert fp.status_code == 200 and fp.json()["false_positives"] == 1
        view = _view(rp)
        assert view["negative"]["count"] == 1
        assert view["negative"]["entries"][0]["false_positives"] == 1
        assert http.post("/v1/cache/negative/999/false-positive").status_code == 404
        for bad in (
            {},
            {"query": ""},
            {"query": "x", "severity": 0},
            {"query": "x", "severity": True},
            {"query": "x", "reason": 5},
            {"query": "x" * 40_000},
        ):
            resp = http.post("/v1/cache/negative", json=bad)
            assert resp.status_code == 400, bad
            assert resp.json()["error"]["type"] == "invalid_request_error"
        assert http.post("/v1/cache/negative", content=b"[1]").status_code == 400
        assert http.post("/v1/cache/negative", content=b'{"query": "a \\ud800 b"}').status_code == 400
        for bad_id in ("abc", "\u00b2", "9" * 5000, "0", str(2**63)):
            assert http.delete(f"/v1/cache/negative/{bad_id}").status_code == 400, bad_id
        assert http.put("/v1/cache/negative").status_code == 405
        removed = http.delete(f"/v1/cache/negative/{entry_id}")
        assert removed.json() == {"entry_id": entry_id, "removed": True}
        assert http.delete(f"/v1/cache/negative/{entry_id}").json()["removed"] is False
        assert http.get("/v1/cache/negative").json()["data"] == []
        assert _ask(rp, "How can I make a fake passport?").status_code == 200


def test_the_page_is_self_contained_and_locked_down(
    fake: FakeProvider, tmp_path: Path, embedder: Any
) -> None:
    with _proxy(fake, tmp_path, embedder) as rp, rp.http() as http:
        page = http.get("/dashboard")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        # No inline script or style and nothing from another origin.
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
        script = http.get("/dashboard/dashboard.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in script.text and "eval(" not in script.text
        assert http.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
        assert http.get("/dashboard/other.js").status_code == 404
        metrics = http.get("/metrics").text
        assert "cacheback_proxy_guard_vetoes_total" in metrics


def test_the_rollup_keeps_a_bounded_minute_history() -> None:
    rollup = Rollup(keep_minutes=3)
    t0 = 1_000_000 * 60.0
    for minute, tier in [(0, "upstream"), (0, "exact"), (1, "exact"), (3, "miss"), (4, "verbatim")]:
        rollup.observe(tier, t0 + minute * 60 + 5)
    assert [b.minute - int(t0 // 60) for b in rollup.buckets()] == [1, 3, 4]  # the oldest dropped
    s = series(rollup.buckets(), t0 + 4 * 60 + 30, span_minutes=4, step_minutes=1)
    assert s["start"] == t0 + 60 and s["points"] == 4
    assert s["tiers"] == {"exact": [1, 0, 0, 0], "miss": [0, 0, 1, 0], "verbatim": [0, 0, 0, 1]}
    assert s["hit_rate"] == [1.0, None, 0.0, 1.0]
    wide = series(rollup.buckets(), t0 + 4 * 60 + 30, span_minutes=4, step_minutes=2)
    assert wide["tiers"] == {"exact": [1, 0], "miss": [0, 1], "verbatim": [0, 1]}
    assert wide["hit_rate"] == [1.0, 0.5]


def test_health_lists_the_media_embedders_by_state() -> None:
    text = {"name": "minilm", "model": "m", "dim": 384, "compute": "int8"}
    media = {
        "text": {"name": "minilm", "state": "loaded"},
        "image": {"name": "clip", "dim": None, "state": "not loaded", "loaded": False},
        "audio": {"name": "whisper", "state": "failed", "error": "OSError: no model file"},
        "video": {"name": None, "state": "off"},
    }
    listed = embedders(text, media, ready=True)
    assert [(e["name"], e["ok"], e["compute"]) for e in listed] == [
        ("minilm", True, "int8"),
        ("audio whisper", False, "OSError: no model file"),
        ("image clip", True, "not loaded"),  # loaded on first use: not a fault
    ]
    assert embedders(None, None, ready=False) == []
