"""Helpers for the proxy tests: the proxy as a real uvicorn server on a loopback port.

``running_proxy`` serves ``create_app`` on a thread (in-process: it can share the
session's embedder), ``proxy_process`` runs ``python -m cacheback.proxy`` as a
subprocess (for workers, signals and shutdown).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fake_provider import FakeProvider
from starlette.applications import Starlette

from cacheback.adapters.proxy import ProxyConfig, create_app
from cacheback.adapters.proxy._app import Proxy
from cacheback.adapters.proxy._server import HeadHoldingProtocol


@dataclass
class RunningProxy:
    base_url: str  # http://127.0.0.1:PORT
    app: Starlette | None = None

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def proxy(self) -> Proxy:
        assert self.app is not None
        state: Proxy = self.app.state.proxy
        return state

    def openai(self, api_key: str = "sk-test-alpha", **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=self.openai_base_url, api_key=api_key, max_retries=0, **kwargs)

    def async_openai(self, api_key: str = "sk-test-alpha", **kwargs: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.openai_base_url, api_key=api_key, max_retries=0, **kwargs)

    def anthropic(self, api_key: str = "sk-ant-test-alpha", **kwargs: Any) -> Any:
        import anthropic

        return anthropic.Anthropic(base_url=self.anthropic_base_url, api_key=api_key, max_retries=0, **kwargs)

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proxy_config(fake: FakeProvider, cache_dir: Path, **overrides: Any) -> ProxyConfig:
    """A config in front of ``fake`` with nothing taken from this process's environment."""
    base = ProxyConfig(
        openai_base_url=fake.openai_base_url,
        anthropic_base_url=fake.anthropic_base_url,
        cache_dir=str(cache_dir),
        upstream_timeout=10.0,
        connect_timeout=2.0,
        graceful_timeout=5.0,
        log_level="warning",
    )
    return replace(base, **overrides)


# C functions that block: SQLite statements, ONNX inference, HNSW search, file reads, sleep.
BLOCKING = frozenset(
    {
        "Connection.execute", "Connection.executemany", "Connection.commit", "Cursor.execute",
        "Cursor.executemany", "Cursor.fetchall", "Cursor.fetchone", "InferenceSession.run",
        "Index.knn_query", "Index.add_items", "Index.save_index", "Index.load_index",
        "BufferedReader.read", "FileIO.read", "sleep", "load_verify_locations",
    }
)  # fmt: skip


class LoopWatch:
    """Records blocking C calls made on the proxy's event-loop thread once ``armed``."""

    def __init__(self) -> None:
        self.armed = False
        self.calls: list[str] = []

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if self.armed and event == "c_call":
            name = getattr(arg, "__qualname__", "")
            if name in BLOCKING:
                self.calls.append(name)


@contextmanager
def running_proxy(
    config: ProxyConfig, embedder: Any, *, watch: LoopWatch | None = None, **app_kwargs: Any
) -> Iterator[RunningProxy]:
    """Serve the proxy app on a free loopback port (a uvicorn thread) for the block."""
    app = create_app(config, embedder=embedder, **app_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # As the real server does: without it every response waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(config.graceful_timeout),
            http=HeadHoldingProtocol,  # as ``cacheback-proxy`` serves
        )
    )

    def serve() -> None:
        if watch is not None:
            sys.setprofile(watch.hook)  # this thread only: the one running the event loop
        server.run(sockets=[sock])

    thread = threading.Thread(target=serve, name="proxy", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the proxy did not start")
        time.sleep(0.01)
    try:
        yield RunningProxy(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class ProxyProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def proxy_process(
    fake: FakeProvider, cache_dir: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ProxyProcess]:
    """``python -m cacheback.proxy`` in front of ``fake``; waits until /health is ready."""
    port = free_port()
    run_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CACHEBACK_", "OPENAI_", "ANTHROPIC_"))
    }
    run_env.update(env or {})
    log_path = log_dir / f"proxy-{port}.log"
    cmd = [
        sys.executable, "-m", "cacheback.proxy",
        "--port", str(port),
        "--cache-dir", str(cache_dir),
        "--upstream-openai-base-url", fake.openai_base_url,
        "--upstream-anthropic-base-url", fake.anthropic_base_url,
        "--upstream-timeout", "10",
        "--log-level", "warning",
        *args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env)
    running = ProxyProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the proxy exited with {proc.returncode}:\n{running.log()}")
            try:
                if httpx.get(f"{running.base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not become ready:\n{running.log()}")
            time.sleep(0.1)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def chat_body(question: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": question}], **extra}


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """``(event, data)`` pairs of a server-sent-events body, exactly as framed."""
    out: list[tuple[str | None, str]] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        event = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out
