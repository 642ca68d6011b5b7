"""Run the tests' fake provider in its own process for benchmarks: prints its base URL,
answers every call after ``--delay`` seconds, stops when stdin closes.

``fake_in_subprocess(delay)`` starts it from a benchmark and yields its OpenAI base URL.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fake_in_subprocess(delay: float) -> Iterator[str]:
    """The fake provider in a process of its own; yields its OpenAI base URL (``.../v1``)."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--delay", str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip() + "/v1"
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fake_provider import Reply, start_fake_provider

    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.3)
    args = ap.parse_args()
    with start_fake_provider() as fake:
        fake.responder = lambda req: Reply(delay=args.delay)
        print(fake.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
