"""Two proxies side by side, one request at a time each in turn: this tree's and another
checkout's, in front of one fake provider, with the same requests also sent straight to it.

    python loadtests/bench_relay_pair.py --base ../cacheback-before [--requests 300] [--upstream-delay 0.3]

On a shared box whose load swings within a minute, ``loadtests/ab.py`` (whole runs in
turn) needs many rounds to see a fraction of a millisecond; here every cycle sends one
request straight, one through each proxy (the order rotates), so each overhead is paired
with a direct call made moments before or after. Measured at concurrency 1 for a miss (a
new question: lookup and relay) and a bypass (``X-Cacheback-Bypass``: the relay alone).
Prints ``name value`` figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_proxy import BASES, Conn, chat, free_port, run_load, wait_health

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def proxy(tree: Path, fake_url: str) -> Iterator[tuple[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBACK_", "OPENAI_"))}
    env["PYTHONPATH"] = str(tree)
    port = free_port()
    cmd = [
        sys.executable, "-m", "cacheback.proxy", "--port", str(port),
        "--upstream-openai-base-url", f"{fake_url}/v1", "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as cache_dir:
        proc = subprocess.Popen([*cmd, "--cache-dir", cache_dir], env=env, cwd=tree)
        try:
            wait_health(f"http://127.0.0.1:{port}", proc)
            yield ("127.0.0.1", port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


async def measure(args: argparse.Namespace, fake: tuple[str, int], sides: dict[str, tuple[str, int]]) -> None:
    for address in sides.values():  # a scope with entries, as in bench_proxy
        warm = await run_load("populate", address, BASES, 4, seconds=60, max_requests=len(BASES))
        assert warm.errors == 0, warm.tiers
    await asyncio.sleep(0.5)
    counter = itertools.count()
    conns = {name: Conn(*address) for name, address in {"direct": fake, **sides}.items()}
    for mode in ("bypass", "miss"):
        extra = "x-cacheback-bypass: true\r\n" if mode == "bypass" else ""
        times: dict[str, list[float]] = {name: [] for name in conns}
        for i in range(args.requests):
            names = list(conns)
            names = names[i % len(names) :] + names[: i % len(names)]
            for name in names:
                question = f"Pair question {next(counter)}: what is {next(counter)} squared?"
                t0 = time.perf_counter()
                status, _, _ = await conns[name].request(
                    "/v1/chat/completions", chat(question), "sk-bench", "" if name == "direct" else extra
                )
                times[name].append((time.perf_counter() - t0) * 1000)
                assert status == 200, (name, status)
        for name in sides:
            paired = [t - d for t, d in zip(times[name], times["direct"], strict=True)]
            print(f"{mode}_{name}_p50_ms {statistics.median(times[name]):.3f}")
            print(f"{mode}_{name}_overhead_ms {statistics.median(paired):.3f}")
        print(f"{mode}_direct_p50_ms {statistics.median(times['direct']):.3f}")
    for conn in conns.values():
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="the other checkout")
    p.add_argument("--requests", type=int, default=300, help="cycles per mode")
    p.add_argument("--upstream-delay", type=float, default=0.3)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBACK_", "OPENAI_"))}
    bench = str(ROOT / "loadtests" / "bench_proxy.py")
    fake_cmd = [sys.executable, bench, "--role", "fake", "--upstream-delay", str(args.upstream_delay)]
    fake_proc = subprocess.Popen(fake_cmd, stdout=subprocess.PIPE, env=env)
    try:
        assert fake_proc.stdout is not None
        fake_url = fake_proc.stdout.readline().decode().strip()
        fake = ("127.0.0.1", int(fake_url.rsplit(":", 1)[1]))
        with ExitStack() as stack:
            sides = {
                "base": stack.enter_context(proxy(args.base.resolve(), fake_url)),
                "new": stack.enter_context(proxy(ROOT, fake_url)),
            }
            asyncio.run(measure(args, fake, sides))
    finally:
        fake_proc.send_signal(signal.SIGTERM)
        fake_proc.wait(timeout=30)


if __name__ == "__main__":
    main()
