"""The Dockerfile's runtime contract, checked without a Docker engine.

The image cannot be built on the development machine (no engine), so this reads the
final stage of the repository's Dockerfile and runs what it declares: its ``ENV`` block
as the proxy's environment, its ``ENTRYPOINT`` as the command, its ``HEALTHCHECK`` as
the probe. A renamed variable or flag, a health probe that cannot pass, or a cache
directory that is not the volume fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _proxy_helpers import chat_body, free_port
from fake_provider import FakeProvider

from cacheback.adapters.proxy import ProxyConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
# Another valid value for each variable the image may set.
ALTERNATIVES = {
    "CACHEBACK_HOST": "127.0.0.2",
    "CACHEBACK_PORT": "8181",
    "CACHEBACK_CACHE_DIR": "/elsewhere",
    "CACHEBACK_SIMILARITY_THRESHOLD": "0.95",
    "CACHEBACK_SYNTHESIS_MODE": "auto",
    "CACHEBACK_TTL": "60",
    "CACHEBACK_GRACEFUL_TIMEOUT": "3",
}


def final_stage() -> dict[str, list[str]]:
    """Instruction -> its arguments (one string per occurrence) in the last FROM stage."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    stage: dict[str, list[str]] = {}
    for line in lines[start:]:
        word, _, rest = line.partition(" ")
        stage.setdefault(word.upper(), []).append(rest.strip())
    return stage


def image_env(stage: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for decl in stage.get("ENV", []):
        for pair in shlex.split(decl):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_the_image_runs_unprivileged_with_its_cache_on_the_volume() -> None:
    stage = final_stage()
    env = image_env(stage)
    (base,) = stage["FROM"]
    assert base.startswith("python:") and base.endswith("-slim")
    (user,) = stage["USER"]
    assert user not in ("root", "0")
    assert env["CACHEBACK_CACHE_DIR"] in exec_form(stage["VOLUME"][0])
    assert stage["EXPOSE"] == [env["CACHEBACK_PORT"]]
    # docker stop waits 10 s before SIGKILL: the graceful drain must end sooner.
    config = ProxyConfig.from_env(env)
    assert config.graceful_timeout < 10
    # Every CACHEBACK_* variable the image sets is one the proxy reads: changing it
    # changes the configuration (several of its values equal the defaults).
    def effective(e: dict[str, str]) -> tuple[object, ...]:
        c = ProxyConfig.from_env(e)
        return (c, c.settings(e))

    baseline = effective(env)
    for name, value in env.items():
        if name.startswith("CACHEBACK_"):
            assert name in ALTERNATIVES, f"the image sets {name}, which the proxy does not document"
            assert effective({**env, name: ALTERNATIVES[name]}) != baseline, f"{name}={value} is not read"
    settings = config.settings(env)
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert str(settings.cache_dir) == env["CACHEBACK_CACHE_DIR"]
    assert settings.similarity_threshold == float(env["CACHEBACK_SIMILARITY_THRESHOLD"])
    assert settings.synthesis_mode == env["CACHEBACK_SYNTHESIS_MODE"]
    assert settings.cache_ttl == float(env["CACHEBACK_TTL"])
    ignored = {".git", ".venv", "**/__pycache__"}
    assert ignored <= set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())


def test_the_entrypoint_serves_and_the_healthcheck_passes(
    fake: FakeProvider, cache_dir: Path, tmp_path: Path
) -> None:
    stage = final_stage()
    entrypoint = exec_form(stage["ENTRYPOINT"][0])
    health = stage["HEALTHCHECK"][0]
    probe = exec_form(health[health.index("CMD") + 3 :].strip())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBACK_", "OPENAI_", "ANTHROPIC_"))}
    env.update(image_env(stage))
    # What differs from a container: this machine's loopback, a temporary volume, the
    # fake provider, and the console scripts of this environment.
    env.update(
        CACHEBACK_HOST="127.0.0.1",
        CACHEBACK_PORT=str(port),
        CACHEBACK_CACHE_DIR=str(cache_dir),
        CACHEBACK_OPENAI_BASE_URL=fake.openai_base_url,
        CACHEBACK_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        OPENAI_API_KEY="sk-image-test",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    log_path = tmp_path / "proxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(entrypoint, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        probe_env = {**env, "PATH": env["PATH"]}
        while subprocess.run(probe, env=probe_env, capture_output=True, timeout=30).returncode != 0:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.2)
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=chat_body("What does the image answer?"),
            headers={"Authorization": "Bearer sk-caller"},
            timeout=30,
        )
        assert resp.status_code == 200 and resp.headers["x-cacheback-tier"] == "upstream"
        # The cache lives where the image's volume is.
        deadline = time.monotonic() + 10
        while not (cache_dir / "cache.db").exists():
            assert time.monotonic() < deadline, sorted(p.name for p in cache_dir.iterdir())
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)  # what docker stop sends
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code in (0, -signal.SIGTERM)
