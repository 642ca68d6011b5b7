"""The Docker image, built and run for real with buildah (no Docker engine needed).

``buildah bud`` builds the repository's Dockerfile; ``buildah run --isolation chroot``
starts the image's ENTRYPOINT, which then listens on this machine's loopback. The test
waits for the image's own HEALTHCHECK command to pass, sends requests through the proxy
to the fake provider (the repeat is a hit), then stops it with SIGTERM while a request
is in flight and checks that the request is answered and the process exits cleanly.

It takes minutes (a build), so it runs only on request:

    CACHEBACK_TEST_IMAGE=1 pytest -m container tests/test_image.py    (or scripts/test-image.sh)

and needs buildah plus a ``python:3.11-slim`` base image (pulled, or built locally).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy_helpers import chat_body, free_port
from fake_provider import FakeProvider, Reply

BUILD_TIMEOUT = 1500  # seconds: a build with no cached layers downloads every wheel
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/cacheback/proxy:latest"
BASE = "python:3.11-slim"


def _images() -> set[str]:
    out = subprocess.run(
        ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return set(out.stdout.split())


def _skip_reason() -> str | None:
    if os.environ.get("CACHEBACK_TEST_IMAGE") != "1":
        return "builds the image (minutes): set CACHEBACK_TEST_IMAGE=1 to run it"
    if shutil.which("buildah") is None:
        return "buildah is not installed (Debian: apt-get install buildah)"
    images = _images()
    if not any(name.endswith(BASE) for name in images):
        return f"no {BASE} base image in buildah's storage (pull it, or build a local stand-in)"
    return None


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """Build the image (cached layers are reused) and return its Docker config."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    build = subprocess.run(
        ["buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker", "-t", IMAGE, "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    inspected = subprocess.run(
        ["buildah", "inspect", "--type", "image", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config: dict[str, Any] = json.loads(inspected.stdout)["Docker"]["config"]
    return config


@pytest.fixture
def container(image: dict[str, Any]) -> Iterator[str]:
    name = f"cacheback-image-test-{os.getpid()}"
    subprocess.run(["buildah", "rm", name], capture_output=True, timeout=60, check=False)
    subprocess.run(["buildah", "from", "--name", name, IMAGE], capture_output=True, timeout=120, check=True)
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120, check=False)


def _run_args(container: str, env: dict[str, str], command: list[str]) -> list[str]:
    args = ["buildah", "run", "--isolation", "chroot"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return [*args, container, "--", *command]


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (buildah's runtime, then the proxy), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _proxy_pid(runner: subprocess.Popen[bytes]) -> int:
    """The pid of the image's ENTRYPOINT process (chroot isolation shares the pid space)."""
    for pid in _descendants(runner.pid):
        try:
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Skip buildah's own exec helper, whose arguments name the command it starts.
        if not cmdline[0].startswith(b"buildah") and any(p.endswith(b"cacheback-proxy") for p in cmdline[:2]):
            return pid
    raise AssertionError("the proxy process was not found under buildah run")


def test_the_image_builds_serves_and_drains(
    image: dict[str, Any], container: str, fake: FakeProvider, tmp_path: Path
) -> None:
    # hnswlib was compiled for the generic x86-64 baseline, not for this machine's CPU.
    flags = subprocess.run(
        _run_args(container, {}, ["cat", "/opt/venv/hnswlib-compiler.txt"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "native" not in flags
    if platform.machine() == "x86_64":
        assert "-march=x86-64 " in flags, flags
    # No compiler in the final stage.
    which = subprocess.run(
        _run_args(container, {}, ["sh", "-c", "command -v gcc g++ cc c++ || true"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert which.stdout.strip() == ""

    port = free_port()
    env = {
        "CACHEBACK_HOST": "127.0.0.1",  # chroot isolation: the host's loopback
        "CACHEBACK_PORT": str(port),
        "CACHEBACK_OPENAI_BASE_URL": fake.openai_base_url,
        "CACHEBACK_ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        "OPENAI_API_KEY": "sk-image-test",
    }
    log_path = tmp_path / "proxy.log"
    with log_path.open("wb") as log:
        runner = subprocess.Popen(
            _run_args(container, env, list(image["Entrypoint"])), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        # The image's HEALTHCHECK, run inside the container as Docker would.
        test = image["Healthcheck"]["Test"]
        assert test[0] == "CMD", test
        deadline = time.monotonic() + 180
        while True:
            probe = subprocess.run(
                _run_args(container, {"CACHEBACK_PORT": str(port)}, test[1:]),
                capture_output=True,
                timeout=60,
                check=False,
            )
            if probe.returncode == 0:
                break
            assert runner.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(1)

        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        auth = {"Authorization": "Bearer sk-caller"}
        body = chat_body("Which port does the container listen on?")
        first = httpx.post(url, json=body, headers=auth, timeout=60)
        assert first.status_code == 200, first.text
        assert first.headers["x-cacheback-tier"] == "upstream"
        second = httpx.post(url, json=body, headers=auth, timeout=60)
        assert second.status_code == 200
        assert second.headers["x-cacheback-tier"] in ("exact", "verbatim")
        assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
        assert fake.count("chat") == 1
        # The dashboard's files are in the installed package.
        page = httpx.get(f"http://127.0.0.1:{port}/dashboard", timeout=30)
        assert page.status_code == 200 and "dashboard.js" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        script = httpx.get(f"http://127.0.0.1:{port}/dashboard/dashboard.js", timeout=30)
        assert script.status_code == 200 and "/v1/cache/dashboard" in script.text

        # SIGTERM (what `docker stop` sends) while a slow upstream call is in flight.
        fake.script(Reply(delay=2.0))
        slow: dict[str, Any] = {}

        def call() -> None:
            try:
                slow["response"] = httpx.post(
                    url, json=chat_body("A slow question asked during shutdown?"), headers=auth, timeout=60
                )
            except httpx.HTTPError as exc:
                slow["error"] = exc

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 30
        while fake.count("chat") < 2:
            assert time.monotonic() < deadline, "the slow request never reached the provider"
            time.sleep(0.05)
        pid = _proxy_pid(runner)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        caller.join(timeout=60)
        assert "error" not in slow, slow.get("error")
        assert slow["response"].status_code == 200
        assert slow["response"].headers["x-cacheback-tier"] == "upstream"
        code = runner.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        if runner.poll() is None:
            for pid in _descendants(runner.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            runner.kill()
            runner.wait(timeout=30)
    log_text = log_path.read_text(errors="replace")
    # uvicorn re-raises the SIGTERM once it has shut down (Docker reports 143); buildah
    # run reports a command that ended on a signal as 1.
    assert code in (0, 1), log_text[-4000:]
    assert "Application shutdown complete" in log_text and "Finished server process" in log_text
    # Within the image's graceful timeout (under docker stop's 10 s), not a kill.
    assert took < float(image_env(image)["CACHEBACK_GRACEFUL_TIMEOUT"]) + 5, took
    assert "proxy draining" in log_text


def image_env(image: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image.get("Env") or [])
