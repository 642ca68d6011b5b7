"""docker-compose.yml, checked without Docker: it parses, every name it uses is defined,
and the services are wired as documented (the proxy on a named volume; with the
``postgres`` profile, two replicas sharing one PostgreSQL + pgvector store)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cacheback.core._settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SERVICE_KEYS = {
    "build", "image", "ports", "environment", "volumes", "stop_grace_period", "restart",
    "profiles", "healthcheck", "depends_on", "command",
}  # fmt: skip


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def known_variables() -> set[str]:
    """CACHEBACK_* names the package reads: the engine settings' fields, and the names
    quoted in its source (the proxy's own flags)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "cacheback").rglob("*.py"))
    quoted = set(re.findall(r'"(CACHEBACK_[A-Z0-9_]+)"', source))
    return quoted | {f"CACHEBACK_{name.upper()}" for name in Settings.names()}


def named_volume(mount: str) -> str:
    name, _, target = mount.partition(":")
    assert target.startswith("/"), mount
    return name


def test_the_compose_file_is_well_formed() -> None:
    data = compose()
    assert set(data) <= {"services", "volumes"} | {k for k in data if k.startswith("x-")}
    services: dict[str, dict[str, Any]] = data["services"]
    declared = set(data["volumes"])
    used: set[str] = set()
    known = known_variables()
    unknown: set[str] = set()
    for name, svc in services.items():
        assert set(svc) <= SERVICE_KEYS, (name, set(svc) - SERVICE_KEYS)
        assert "image" in svc or "build" in svc, name
        for mount in svc.get("volumes", []):
            used.add(named_volume(mount))
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), port
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, dep
            assert cond["condition"] in ("service_started", "service_healthy"), cond
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
        env = svc.get("environment") or {}
        assert isinstance(env, dict), name
        for var in env:
            if var.startswith("CACHEBACK_"):
                # A renamed or misspelt variable would be silently ignored by the proxy.
                if var not in known:
                    unknown.add(var)
    assert used == declared, (used, declared)
    assert not unknown, f"the compose file sets {unknown}, which cacheback does not read"


def test_the_default_proxy_keeps_its_cache_on_a_named_volume() -> None:
    services = compose()["services"]
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"proxy"}
    proxy = services["proxy"]
    assert any(m.endswith(":/data") for m in proxy["volumes"])
    assert "CACHEBACK_STORE_URL" not in proxy["environment"]


def test_two_replicas_share_one_postgres_store() -> None:
    services = compose()["services"]
    pg = services["postgres"]
    assert pg["image"].startswith("pgvector/pgvector:")
    replicas = {n: s for n, s in services.items() if "CACHEBACK_STORE_URL" in (s.get("environment") or {})}
    assert len(replicas) == 2
    host_ports = set()
    user, db = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"]
    for name, svc in replicas.items():
        assert svc["profiles"] == pg["profiles"] == ["postgres"], name
        url = svc["environment"]["CACHEBACK_STORE_URL"]
        assert re.fullmatch(rf"postgresql://{user}:[^@]+@postgres:5432/{db}", url), url
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["image"] == services["proxy"]["image"]
        (mapping,) = svc["ports"]
        host_ports.add(mapping.split(":")[0])
    assert len(host_ports) == 2 and "8080" not in host_ports
    # No replica shares a cache directory with another: two processes on one SQLite
    # cache directory belong to one proxy (--workers), not to replicas.
    mounts = [m for s in replicas.values() for m in s.get("volumes", [])]
    assert len({named_volume(m) for m in mounts}) == len(mounts)
    for svc in replicas.values():
        assert "CACHEBACK_ADMIN_KEY" in svc["environment"]  # the dashboard on each replica
