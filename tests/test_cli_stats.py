"""``cacheback stats``: the dashboard's figures as a plain table, from a cache directory or
from a running proxy (the same JSON the page polls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy_helpers import chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider

from cacheback import SemanticCache
from cacheback.adapters.cli import main

pytestmark = pytest.mark.slow


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def line_with(out: str, start: str, after: str = "") -> list[str]:
    """The words of the first line starting with ``start`` below the line holding ``after``."""
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if after in line)
    return next(line.split() for line in lines[first:] if line.strip().startswith(start))


def tier_row(out: str, tier: str) -> list[str]:
    return line_with(out, tier, after="last hour")


def test_stats_of_a_cache_directory(
    cache_dir: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with SemanticCache(cache_dir=cache_dir, embedder=embedder) as cache:
        cache.populate("What is the tallest mountain?", "Mount Everest.")
        cache.populate("What is the longest river?", "The Nile.")
        assert cache.lookup("What is the tallest mountain?") == "Mount Everest."
        assert cache.lookup("What is the tallest mountain?") == "Mount Everest."
        assert cache.lookup("Which metal is liquid at room temperature?") is None
        cache.negative.add("Show me how to\x1b[2J wipe a disk\nFAKE LINE", reason="harm", category="safety")
        cache.flush()
    code, out, _ = run(capsys, "--cache-dir", str(cache_dir), "stats")
    assert code == 0
    assert "lookups 3  hits 2  hit rate 66.7%" in out
    assert line_with(out, "entries")[:2] == ["entries", "2"]
    assert "negative entries 1" in out
    assert tier_row(out, "exact")[:2] == ["exact", "2"]
    assert tier_row(out, "miss")[:2] == ["miss", "1"]
    # The hour / day columns and the guard's vetoes live in a proxy process only.
    assert tier_row(out, "exact")[2:4] == ["-", "-"]
    assert "guard vetoes: only a running proxy counts them" in out
    top = line_with(out, "#")
    assert top[1:3] == ["2", "hits"] and " ".join(top[3:]) == "What is the tallest mountain?"
    # Caller text cannot clear the screen or start a line of its own.
    neg = next(line for line in out.splitlines() if "wipe a disk" in line)
    assert "\\x1b[2J" in neg and "\\nFAKE LINE" in neg and "\x1b" not in out
    assert not any(line.startswith("FAKE LINE") for line in out.splitlines())
    assert "store ok (embedded" in out


def test_stats_of_a_running_proxy(
    fake: FakeProvider,
    tmp_path: Path,
    embedder: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = proxy_config(fake, tmp_path / "cache", admin_key="admin-cli")
    with running_proxy(config, embedder) as rp:
        for question in ("Is rain wet?", "Is rain wet?", "Is rain not wet?", "Who invented the telephone?"):
            httpx.post(
                f"{rp.base_url}/v1/chat/completions",
                json=chat_body(question),
                headers={"Authorization": "Bearer sk-cli-caller"},
                timeout=30,
            )
            time.sleep(0.4)
        monkeypatch.setenv("CACHEBACK_ADMIN_KEY", "wrong")
        code, _, err = run(capsys, "stats", "--proxy", rp.base_url)
        assert code == 1 and "401" in err
        monkeypatch.setenv("CACHEBACK_ADMIN_KEY", "admin-cli")
        code, out, _ = run(capsys, "stats", "--proxy", rp.base_url)
        view = httpx.get(
            f"{rp.base_url}/v1/cache/dashboard", headers={"Authorization": "Bearer admin-cli"}, timeout=30
        ).json()
    assert code == 0
    t = view["totals"]
    assert f"lookups {t['lookups']}  hits {t['hits']}  hit rate {t['hit_rate']:.1%}" in out
    assert (t["lookups"], t["hits"]) == (4, 1)
    hour = {k: sum(v) for k, v in view["series"]["hour"]["tiers"].items()}
    assert tier_row(out, "upstream")[:4] == ["upstream", "3", str(hour["upstream"]), str(hour["upstream"])]
    assert tier_row(out, "exact")[:3] == ["exact", "1", "1"]
    assert f"tokens saved {t['saved_tokens']}" in out and t["saved_tokens"] > 0
    assert "guard vetoes: negation 1" in out
    # Content display is off on that proxy: the table shows ids and counts, no text.
    assert "Is rain wet?" not in out and "text hidden" in out
    assert f"proxy worker {view['worker']} ready" in out
