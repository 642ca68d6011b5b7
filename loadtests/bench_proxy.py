"""Proxy benchmark: HTTP requests/s and latency through ``cacheback-proxy``.

Three processes: the fake provider (answers after 300 ms), the proxy (one worker unless
``--workers``), and this load generator (a minimal keep-alive HTTP/1.1 client on raw
asyncio streams, so that the client costs as little CPU as possible on a small box).

    python loadtests/bench_proxy.py [--seconds 5] [--workers 1]

Measured at concurrency 1 and 64: exact hits (repeated questions), semantic hits
(paraphrases never seen before, each a verbatim hit), misses (new questions: one
upstream call each), and the same misses sent straight to the fake provider; the
proxy's overhead on a miss is the difference. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_DELAY = 0.3

BASES = [
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "What is the boiling point of water at sea level?",
    "Who wrote the play Hamlet?",
    "How do I center a div with CSS?",
    "What is the speed of light in vacuum?",
    "How do I create a virtual environment in Python?",
    "What causes the seasons on Earth?",
    "How do I merge two branches in git?",
    "What is photosynthesis?",
    "How many bones are in the adult human body?",
    "What is the difference between TCP and UDP?",
    "How do I read a CSV file with pandas?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain in the world?",
    "How do I install Docker on Ubuntu?",
    "What is a black hole?",
    "How do vaccines work?",
    "What is the largest ocean on Earth?",
    "How do I sort a dictionary by value in Python?",
]
PREFIXES = ["", "Hey, ", "Quick question: ", "Please tell me: ", "So, ", "OK, ", "Hi! ", "Question: ",
            "I was wondering: ", "Tell me: "]  # fmt: skip
SUFFIXES = ["", " Thanks.", " Thank you!", " Please.", " Cheers.", " Thx", " Many thanks.",
            " Thanks a lot.", " Please answer.", " Ta."]  # fmt: skip


def variants(base: str) -> Iterator[str]:
    for p in PREFIXES:
        for s in SUFFIXES:
            for text in (f"{p}{base}{s}", f"{p}{base.lower()}{s}"):
                if text != base:
                    yield text


# --- a minimal HTTP/1.1 keep-alive client --------------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, path: str, body: bytes, auth: str, extra: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\nauthorization: Bearer {auth}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def chat(question: str) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": question}]}).encode()


@dataclass
class Result:
    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    tiers: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        tiers = ",".join(f"{k}={v}" for k, v in sorted(self.tiers.items()))
        errors = f" errors={self.errors}" if self.errors else ""
        return (
            f"{self.name:<18} {self.concurrency:>4} {len(self.latencies):>7} {self.rps:>9.1f} "
            f"{self.pct(0.5):>8.2f} {self.pct(0.99):>8.2f}  {tiers}{errors}"
        )


async def run_load(
    name: str,
    url: tuple[str, int],
    questions: list[str] | Iterator[str],
    concurrency: int,
    *,
    seconds: float,
    max_requests: int,
    cycle: bool = False,
    bypass: bool = False,
) -> Result:
    """``concurrency`` connections sending questions until ``seconds`` or ``max_requests``."""
    result = Result(name, concurrency)
    extra = "x-cacheback-bypass: true\r\n" if bypass else ""
    pool = list(questions)
    next_index = 0
    deadline = time.perf_counter() + seconds

    def take() -> str | None:
        nonlocal next_index
        if len(result.latencies) + result.errors >= max_requests or time.perf_counter() > deadline:
            return None
        if next_index >= len(pool):
            if not cycle:
                return None
            next_index = 0
        q = pool[next_index]
        next_index += 1
        return q

    async def worker() -> None:
        conn = Conn(*url)
        try:
            while (q := take()) is not None:
                t0 = time.perf_counter()
                try:
                    status, headers, _ = await conn.request(
                        "/v1/chat/completions", chat(q), "sk-bench", extra
                    )
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    await conn.close()
                    continue
                if status != 200:
                    result.errors += 1
                    continue
                result.latencies.append(time.perf_counter() - t0)
                result.tiers[headers.get("x-cacheback-tier", "direct")] += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - t0
    return result


# --- processes -------------------------------------------------------------------------------------


def serve_fake(delay: float) -> None:
    """``--role fake``: the fake provider answering every call after ``delay`` seconds."""
    import socket

    import uvicorn

    sys.path.insert(0, str(ROOT / "tests"))
    from fake_provider import FakeProvider, Reply

    fake = FakeProvider()
    fake.responder = lambda req: Reply(delay=delay)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without TCP_NODELAY each response would wait ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(fake.app(), log_level="warning", access_log=False, lifespan="off", backlog=1024)
    uvicorn.Server(config).run(sockets=[sock])


def wait_health(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the proxy exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the proxy did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def semantic_questions(n_needed: int) -> list[str]:
    """Paraphrases the proxy will answer as verbatim hits (screened with the same
    embedder and guard, in this process, before the load starts)."""
    from cacheback.adapters.embedders import MiniLMEmbedder
    from cacheback.guard import verbatim_decision

    emb = MiniLMEmbedder(intra_op_threads=2)
    out: list[str] = []
    for base in BASES:
        cands = list(variants(base))
        vecs = emb.embed([base, *cands])
        for cand, vec in zip(cands, vecs[1:], strict=True):
            sim = float(vecs[0] @ vec)
            if verbatim_decision(cand, base, sim, 0.92, guard=True).hit:
                out.append(cand)
    # Interleave the bases so that every batch of requests spreads over all of them.
    by_base = [[q for q in out if base.lower().rstrip("?") in q.lower()] for base in BASES]
    mixed = [q for group in zip(*by_base, strict=False) for q in group]
    return mixed[:n_needed] if len(mixed) >= n_needed else out


@contextmanager
def processes(args: argparse.Namespace) -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    """The fake provider and the proxy as subprocesses: yields (proxy, fake) addresses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBACK_", "OPENAI_"))}
    fake_proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "fake", "--upstream-delay", str(args.upstream_delay)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert fake_proc.stdout is not None
    fake_url = fake_proc.stdout.readline().decode().strip()
    port = free_port()
    watch: list[str] = []
    if args.gc:  # this tree's watcher, whichever tree's proxy runs (loadtests/ab.py)
        watch = [str(Path(__file__).resolve().parent / "gc_watch.py")]
        env["GC_WATCH_OUT"] = args.gc_out
    cmd = [
        sys.executable, *watch, "-m", "cacheback.proxy", "--port", str(port), "--workers", str(args.workers),
        "--upstream-openai-base-url", f"{fake_url}/v1", "--log-level", "warning", *args.proxy_arg,
    ]  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as cache_dir:
            proxy_proc = subprocess.Popen([*cmd, "--cache-dir", cache_dir], env=env)
            args.proxy_pid = proxy_proc.pid
            try:
                wait_health(f"http://127.0.0.1:{port}", proxy_proc)
                yield ("127.0.0.1", port), ("127.0.0.1", int(fake_url.rsplit(":", 1)[1]))
            finally:
                proxy_proc.send_signal(signal.SIGTERM)
                proxy_proc.wait(timeout=60)
    finally:
        fake_proc.send_signal(signal.SIGTERM)
        fake_proc.wait(timeout=30)


async def measure(args: argparse.Namespace, proxy: tuple[str, int], fake: tuple[str, int]) -> list[Result]:
    s = args.seconds
    hits = args.only != "miss"
    if hits:
        print("screening paraphrases ...", flush=True)
    paraphrases = semantic_questions(4000) if hits else []
    # Populate: one miss per base question (and let the write-behind land).
    warm = await run_load("populate", proxy, BASES, 20, seconds=30, max_requests=len(BASES))
    assert warm.errors == 0, warm.tiers
    await asyncio.sleep(0.5)
    if args.gc:  # the proxy's watcher reports the collections from here on apart
        os.kill(args.proxy_pid, signal.SIGUSR1)
    results: list[Result] = []
    counter = iter(range(10**9))

    def fresh(n: int) -> Iterator[str]:
        for _ in range(n):
            yield f"Benchmark question number {next(counter)}: what is {next(counter)} squared?"

    for conc in (1, 64) if hits else ():
        results.append(
            await run_load("exact hit", proxy, BASES, conc, seconds=s, max_requests=10**9, cycle=True)
        )
        print(results[-1].row(), flush=True)
    split = len(paraphrases) // 5
    for conc, qs in ((1, paraphrases[:split]), (64, paraphrases[split:])) if hits else ():
        results.append(await run_load("semantic hit", proxy, qs, conc, seconds=s, max_requests=10**9))
        print(results[-1].row(), flush=True)
    overheads: dict[str, float] = {}
    for conc, n in ((1, args.misses_c1), (64, args.misses_c64)):
        direct = await run_load("miss, direct", fake, fresh(n), conc, seconds=60, max_requests=n)
        results.append(direct)
        print(direct.row(), flush=True)
        via = await run_load("miss, via proxy", proxy, fresh(n), conc, seconds=60, max_requests=n)
        results.append(via)
        print(via.row(), flush=True)
        around = await run_load(
            "bypass via proxy", proxy, fresh(n), conc, seconds=60, max_requests=n, bypass=True
        )
        results.append(around)
        print(around.row(), flush=True)
        for label, r in (("miss", via), ("bypass", around)):
            print(
                f"{'':<18} {conc:>4}  overhead on a {label}: p50 {r.pct(0.5) - direct.pct(0.5):+.2f} ms, "
                f"p99 {r.pct(0.99) - direct.pct(0.99):+.2f} ms",
                flush=True,
            )
            overheads[f"{label}_overhead_c{conc}_p50_ms"] = r.pct(0.5) - direct.pct(0.5)
    # One ``name value`` line per figure, for loadtests/ab.py.
    for r in results:
        slug = r.name.replace(",", "").replace(" ", "_")
        print(f"{slug}_c{r.concurrency}_rps {r.rps:.1f}")
        print(f"{slug}_c{r.concurrency}_p50_ms {r.pct(0.5):.3f}")
        print(f"{slug}_c{r.concurrency}_p99_ms {r.pct(0.99):.3f}")
    for name, value in overheads.items():
        print(f"{name} {value:.3f}")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("bench", "fake"), default="bench")
    p.add_argument("--seconds", type=float, default=5.0, help="per hit measurement")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--upstream-delay",
        type=float,
        default=UPSTREAM_DELAY,
        help="seconds the fake provider waits before answering (0: the relay's own cost stands out)",
    )
    p.add_argument("--only", choices=("all", "miss"), default="all", help="miss: skip the hit scenarios")
    p.add_argument("--misses-c1", type=int, default=30)
    p.add_argument("--misses-c64", type=int, default=640)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument(
        "--proxy-arg",
        action="append",
        default=[],
        help="one more argument for cacheback-proxy (repeat it), e.g. --proxy-arg=--no-gc-freeze",
    )
    p.add_argument(
        "--gc",
        action="store_true",
        help="run the proxy under loadtests/gc_watch.py and print its garbage collections",
    )
    args = p.parse_args()
    if args.role == "fake":
        serve_fake(args.upstream_delay)
        return
    print(f"{'scenario':<18} {'conc':>4} {'requests':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  tiers")
    with tempfile.TemporaryDirectory() as gc_dir:
        args.gc_out = str(Path(gc_dir) / "gc.txt")
        with processes(args) as (proxy, fake):
            results = asyncio.run(measure(args, proxy, fake))
            if args.gc:
                time.sleep(1.0)  # the watcher's last write covers the whole measurement
        if args.gc:
            for line in Path(args.gc_out).read_text().splitlines():
                print(f"proxy_{line}")
    if args.json:
        rows = [
            {
                "name": r.name,
                "concurrency": r.concurrency,
                "requests": len(r.latencies),
                "rps": round(r.rps, 1),
                "p50_ms": round(r.pct(0.5), 3),
                "p99_ms": round(r.pct(0.99), 3),
                "tiers": dict(r.tiers),
                "errors": r.errors,
            }
            for r in results
        ]
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
