"""The proxy as its own process (``python -m cacheback.proxy``): several workers sharing
one cache directory, graceful shutdown with in-flight requests, the command line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _proxy_helpers import chat_body, proxy_process
from fake_provider import FakeProvider, Reply

pytestmark = pytest.mark.slow


def test_command_line_entry_points() -> None:
    for module in ("cacheback.proxy", "cacheback.adapters.proxy"):
        out = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for flag in ("--host", "--port", "--workers", "--upstream-openai-base-url", "--proxy-keys"):
            assert flag in out
    bad = subprocess.run(
        [sys.executable, "-m", "cacheback.proxy", "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "port" in bad.stdout


def test_two_workers_share_one_cache_directory(fake: FakeProvider, cache_dir: Path, tmp_path: Path) -> None:
    env = {"CACHEBACK_PROXY_KEYS": "pk-worker-test-key", "OPENAI_API_KEY": "sk-server-key-in-env"}
    auth = {"Authorization": "Bearer pk-worker-test-key"}
    with proxy_process(
        fake, cache_dir, tmp_path, "--workers", "2", "--access-log", "--log-level", "info", env=env
    ) as px:
        with httpx.Client(base_url=px.base_url, timeout=30) as http:
            first = http.post(
                "/v1/chat/completions", json=chat_body("What is the speed of light?"), headers=auth
            )
            assert first.status_code == 200 and first.headers["x-cacheback-tier"] == "upstream"
            # The answer is written behind: wait until it is in the shared store.
            deadline = time.monotonic() + 10
            while http.get("/v1/cache/stats", headers=auth).json()["entries"] < 1:
                assert time.monotonic() < deadline, "the first answer was never stored"
                time.sleep(0.05)
        served: dict[int, list[str]] = {}
        questions = ["What is the speed of light?", "What's the speed of light?"]
        for i in range(60):
            # A fresh connection each time: the kernel hands it to either worker.
            with httpx.Client(base_url=px.base_url, timeout=30) as http:
                resp = http.post("/v1/chat/completions", json=chat_body(questions[i % 2]), headers=auth)
                pid = http.get("/health").json()["worker"]  # same keep-alive connection, same worker
            assert resp.status_code == 200
            headers = {k: v for k, v in resp.headers.items() if k.startswith("x-cacheback")}
            assert (
                resp.json()["choices"][0]["message"]["content"]
                == first.json()["choices"][0]["message"]["content"]
            ), f"request {i} to worker {pid}: {headers}\n{px.log()[-4000:]}"
            served.setdefault(pid, []).append(resp.headers["x-cacheback-tier"])
            if len(served) == 2 and all(len(t) >= 2 for t in served.values()):
                break
        assert len(served) == 2, "the kernel never gave a connection to the second worker"
        for tiers in served.values():
            assert set(tiers) <= {"exact", "verbatim"}
        assert fake.count("chat") == 1
        assert fake.last_request("chat").headers["authorization"] == "Bearer sk-server-key-in-env"
        assert px.stop() in (0, -signal.SIGTERM)
    log = px.log()
    assert "POST /v1/chat/completions" in log  # the access log is on
    assert "pk-worker-test-key" not in log and "sk-server-key-in-env" not in log


def test_shutdown_finishes_in_flight_requests_and_flushes(
    fake: FakeProvider, cache_dir: Path, tmp_path: Path
) -> None:
    fake.script(Reply(delay=1.0), endpoint="chat")
    fake.script(Reply(chunk_delay=0.1), endpoint="messages")
    auth = {"Authorization": "Bearer sk-caller"}
    results: dict[str, httpx.Response] = {}

    def call(name: str, base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            if name == "chat":
                results[name] = http.post(
                    "/v1/chat/completions", json=chat_body("A slow question"), headers=auth
                )
            else:
                body = {
                    "model": "claude-sonnet-4-20250514",
                    "max_tokens": 50,
                    "stream": True,
                    "messages": [{"role": "user", "content": "A slow stream with several words in it"}],
                }
                headers = {"x-api-key": "sk-ant-caller", "anthropic-version": "2023-06-01"}
                results[name] = http.post("/v1/messages", json=body, headers=headers)

    with proxy_process(fake, cache_dir, tmp_path) as px:
        threads = [threading.Thread(target=call, args=(n, px.base_url)) for n in ("chat", "messages")]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while fake.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # both are now in flight
        t0 = time.monotonic()
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert px.stop() in (0, -signal.SIGTERM)
        for t in threads:
            t.join(timeout=10)
        assert time.monotonic() - t0 >= 0.5  # it waited for them
    assert results["chat"].status_code == 200
    assert results["chat"].json()["choices"][0]["message"]["content"] == "Answer to: A slow question [gpt-4o]"
    assert results["messages"].status_code == 200
    assert results["messages"].text.rstrip().endswith('{"type":"message_stop"}')

    # Both answers were written before the process exited.
    with (
        proxy_process(fake, cache_dir, tmp_path) as px,
        httpx.Client(base_url=px.base_url, timeout=30) as http,
    ):
        again = http.post("/v1/chat/completions", json=chat_body("A slow question"), headers=auth)
        assert again.headers["x-cacheback-tier"] == "exact"
        body = {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "A slow stream with several words in it"}],
        }
        headers = {"x-api-key": "sk-ant-caller", "anthropic-version": "2023-06-01"}
        replay = http.post("/v1/messages", json=body, headers=headers)
        assert replay.headers["x-cacheback-tier"] == "exact"
    assert fake.count() == 2
