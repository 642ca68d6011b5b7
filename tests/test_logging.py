"""Importing and using cacheback leaves the host's logging alone and prints nothing; the
``cacheback`` command prints its events on stderr when asked. Each in a fresh interpreter,
since logging configuration is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LIBRARY_USE = r"""
import json, logging, sys
import structlog

import cacheback
from cacheback import SemanticCache
from cacheback.adapters.embedders import load_default_embedder

state = {
    "structlog_configured": structlog.is_configured(),
    "root_level": logging.getLogger().level,
    "root_handlers": len(logging.getLogger().handlers),
}
with SemanticCache(cache_dir=sys.argv[1], embedder=None) as cache:
    cache.populate("Where is the Eiffel Tower?", "In Paris.")
    state["answer"] = cache.lookup("Where is the Eiffel Tower?")
# A warning-level event (no model in an empty directory): still silent by default.
state["embedder"] = load_default_embedder(model_dir=sys.argv[2]) is None
sys.stderr.flush()
print("STATE " + json.dumps(state))
"""

APP_CONFIGURED = r"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="app: %(name)s %(message)s")
from cacheback.adapters.embedders import load_default_embedder
load_default_embedder(model_dir=sys.argv[1])
"""


def _run(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CACHEBACK_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", source, *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_import_and_library_use_configure_nothing_and_print_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    proc = _run(LIBRARY_USE, str(tmp_path / "cache"), str(empty))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("STATE "), proc.stdout  # no log line on stdout
    state = json.loads(lines[0][len("STATE ") :])
    assert state == {
        "structlog_configured": False,
        "root_level": 30,  # logging.WARNING, Python's default
        "root_handlers": 0,
        "answer": "In Paris.",
        "embedder": True,
    }


def test_an_application_that_configures_logging_sees_cacheback_events(tmp_path: Path) -> None:
    proc = _run(APP_CONFIGURED, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "app: cacheback.embedder" in proc.stderr and "embedder_unavailable" in proc.stderr


def test_the_cli_prints_events_at_the_level_asked(tmp_path: Path) -> None:
    cli = "from cacheback.adapters.cli import main; raise SystemExit(main())"
    quiet = _run(cli, "stats", "--cache-dir", str(tmp_path))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = _run(cli, "stats", "--cache-dir", str(tmp_path), "--log-level", "info")
    assert loud.returncode == 0 and "engine opened" in loud.stderr
    assert "engine opened" not in loud.stdout
