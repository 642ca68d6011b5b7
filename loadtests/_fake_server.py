"""Run the tests' fake provider in its own process for benchmarks: prints its base URL,
answers every call after ``--delay`` seconds, stops when stdin closes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_provider import Reply, start_fake_provider


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.3)
    args = ap.parse_args()
    with start_fake_provider() as fake:
        fake.responder = lambda req: Reply(delay=args.delay)
        print(fake.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
