"""Run one benchmark script in two checkouts, alternating, and compare its figures.

    python loadtests/ab.py --base ../cacheback-before --rounds 3 -- loadtests/bench_engine.py --entries 10000

These machines drift by up to 30 % within an hour, so a before/after comparison is only
fair when both run in the same window: each round runs the base checkout and then this
one (the order flips every round), each in its own process with its own tree first on
``sys.path``. Every line of the form ``name  number`` that a script prints is a figure;
the table gives min / median / max per side and the ratio of the medians (new / base).
It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

FIGURE = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s+(-?\d+(?:\.\d+)?)\s*$")


def figures(output: str) -> dict[str, float]:
    """The ``name value`` lines of a benchmark's output."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        m = FIGURE.match(line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def run(tree: Path, script: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, *script], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(script)} failed:\n{proc.stderr[-2000:]}")
    return figures(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("script", nargs=argparse.REMAINDER, help="-- then the script and its arguments")
    args = ap.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        ap.error("name the benchmark script after --")
    sides: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    for i in range(args.rounds):
        order = ("base", "new") if i % 2 == 0 else ("new", "base")
        for side in order:
            tree = args.base if side == "base" else args.new
            sides[side].append(run(tree.resolve(), script))
            print(f"round {i + 1}/{args.rounds}: {side} done", file=sys.stderr, flush=True)
    names = [n for n in sides["new"][0] if all(n in r for r in sides["base"] + sides["new"])]
    print(f"{'figure':34s} {'base min/med/max':>26s} {'new min/med/max':>26s} {'new/base':>9s}")
    for name in names:
        b = [r[name] for r in sides["base"]]
        n = [r[name] for r in sides["new"]]
        ratio = statistics.median(n) / statistics.median(b) if statistics.median(b) else float("nan")
        print(
            f"{name:34s} {min(b):8.3f}/{statistics.median(b):8.3f}/{max(b):8.3f}"
            f" {min(n):8.3f}/{statistics.median(n):8.3f}/{max(n):8.3f} {ratio:9.2f}"
        )


if __name__ == "__main__":
    main()
