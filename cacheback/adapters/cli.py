"""The ``cacheback`` command: inspect and manage a cache directory.

Exit codes: 0 success, 1 a failed operation (nothing found, bad file), 2 usage errors.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._logging import log_to_stderr
from ..core._errors import CachebackError
from ..core._feedback import Verdict
from ..core._settings import Settings
from ..core._types import NewEntry, scope_id, text_hash
from ..engine._engine import AsyncEngine

_IMPORT_BATCH = 256


def _progress(done: int, total: int, out: TextIO, label: str) -> None:
    if not out.isatty() and done not in (0, total):
        return
    width = 30
    filled = int(width * done / total) if total else width
    out.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        out.write("\n")
    out.flush()


def _settings(args: argparse.Namespace) -> Settings:
    over: dict[str, Any] = {"cache_dir": args.cache_dir, "store_url": getattr(args, "store_url", None)}
    if getattr(args, "threshold", None) is not None:
        over["similarity_threshold"] = args.threshold
    return Settings.from_env(**over)


def _engine(args: argparse.Namespace, *, embedder: bool = True) -> AsyncEngine:
    return AsyncEngine(_settings(args), embedder="auto" if embedder else None)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


async def _stats(args: argparse.Namespace) -> int:
    from ._dashboard_view import collect, dashboard_view
    from ._stats_table import render

    if args.proxy:
        return await _proxy_stats(args)
    async with _engine(args, embedder=False) as engine:
        if args.json:
            stats = await engine.admin.stats()
            _print(stats)
            return 1 if _degraded(stats) else 0
        collected = await collect(engine)
        source = str(engine.settings.storage.cache_dir)
    # Local files: whoever reads them may see the questions (as `cacheback entries` shows).
    view = dashboard_view(collected, now=time.time(), content=True, ready=collected.store_error is None)
    print(render(view, source), end="")
    # Exit status 1: the cache cannot be used.
    return 1 if _degraded(collected.stats or {}) or collected.store_error else 0


def _degraded(stats: dict[str, Any]) -> bool:
    cache = stats.get("cache") or {}
    return bool(cache.get("status", "ok") != "ok")


async def _proxy_stats(args: argparse.Namespace) -> int:
    """The figures of a running proxy (its /v1/cache/dashboard), with CACHEBACK_ADMIN_KEY."""
    import os

    import httpx

    from ._stats_table import render

    url = args.proxy.rstrip("/") + "/v1/cache/dashboard"
    key = os.environ.get("CACHEBACK_ADMIN_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        print(f"cacheback: cannot reach {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"cacheback: {url} answered {resp.status_code}: {resp.text[:300]}", file=sys.stderr)
        return 1
    view = resp.json()
    if args.json:
        _print(view)
    else:
        print(render(view, f"proxy {args.proxy}"), end="")
    return 0


async def _entries(args: argparse.Namespace) -> int:
    async with _engine(args, embedder=False) as engine:
        rows = await engine.admin.entries(limit=args.limit, offset=args.offset)
    now = time.time()
    for e in rows:
        left = max(0.0, e.expires_at - now)
        q = e.query if len(e.query) <= 60 else e.query[:57] + "..."
        a = e.answer.replace("\n", " ")
        a = a if len(a) <= 50 else a[:47] + "..."
        print(f"{e.id:>7}  hits={e.hits:<4} ttl={left:>8.0f}s  {q!r} -> {a!r}")
    if not rows:
        print("(no entries)")
    return 0


async def _lookup(args: argparse.Namespace) -> int:
    from .._semantic_cache import LookupResult
    from ..core._types import LookupRequest

    async with _engine(args) as engine:
        outcome = await engine.lookup(LookupRequest(query=args.query, namespace=args.namespace))
    r = LookupResult.from_outcome(outcome)
    if args.json:
        _print(r.__dict__ if hasattr(r, "__dict__") else {s: getattr(r, s) for s in r.__slots__})
        return 0 if r.hit else 1
    print(f"tier        {r.tier}")
    print(f"similarity  {r.similarity}")
    print(f"entry id    {r.entry_id}")
    if r.guard_reasons:
        print(f"guard       vetoed: {', '.join(r.guard_reasons)}")
    if r.negative:
        print(f"blocked     {r.negative['reason']} (entry {r.negative['entry_id']})")
    for c in r.candidates:
        reasons = f"  guard: {', '.join(c['guard_reasons'])}" if c["guard_reasons"] else ""
        print(f"  candidate {c['entry_id']:>6}  sim={c['similarity']:.4f}  {c['query']!r}{reasons}")
    if r.answer is not None:
        print(f"answer      {r.answer}")
    return 0 if r.hit else 1


async def _report_hit(args: argparse.Namespace, verdict: Verdict) -> int:
    async with _engine(args, embedder=False) as engine:
        similarity = getattr(args, "similarity", None)
        result = await engine.admin.feedback(args.entry_id, verdict, similarity=similarity)
    if not result.found:
        print(f"no entry {args.entry_id}", file=sys.stderr)
        return 1
    if result.removed:
        print(f"entry {args.entry_id} removed: it will not be served again")
    elif result.hit_threshold is None:
        print(f"entry {args.entry_id}: the global similarity threshold applies")
    else:
        print(f"entry {args.entry_id}: its own threshold is now {result.hit_threshold:.4f}")
    return 0


async def _report_wrong_hit(args: argparse.Namespace) -> int:
    return await _report_hit(args, Verdict.WRONG)


async def _report_correct_hit(args: argparse.Namespace) -> int:
    return await _report_hit(args, Verdict.CORRECT)


async def _evict(args: argparse.Namespace) -> int:
    async with _engine(args, embedder=False) as engine:
        n = await engine.admin.evict_expired()
    print(f"evicted {n} expired entries")
    return 0


async def _clear(args: argparse.Namespace) -> int:
    if not args.yes:
        print("refusing to clear without --yes", file=sys.stderr)
        return 2
    async with _engine(args, embedder=False) as engine:
        n = await engine.admin.clear(args.namespace)
    print(f"removed {n} entries")
    return 0


async def _negative(args: argparse.Namespace) -> int:
    async with _engine(args, embedder=args.neg_cmd in ("add", "check")) as engine:
        if args.neg_cmd == "add":
            entry_id = await engine.blocklist.add(
                args.query, reason=args.reason, category=args.category, severity=args.severity
            )
            print(f"added negative entry {entry_id}")
            return 0
        if args.neg_cmd == "list":
            for e in await engine.blocklist.list(args.category, args.limit):
                print(
                    f"{e.id:>6}  [{e.category}] sev={e.severity} fp={e.false_positives}  "
                    f"{e.query!r}  ({e.reason})"
                )
            return 0
        if args.neg_cmd == "remove":
            ok = await engine.blocklist.remove(args.entry_id)
            print("removed" if ok else f"no negative entry {args.entry_id}")
            return 0 if ok else 1
        match = await engine.blocklist.check(args.query)
        if match is None:
            print("not blocked")
            return 1
        _print(match.as_dict())
        return 0


def _record(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "scope": e.scope,
        "query": e.query,
        "answer": e.answer,
        "payload": base64.b64encode(e.payload).decode() if e.payload else None,
        "created_at": e.created_at,
        "expires_at": e.expires_at,
        "hits": e.hits,
        "metadata": e.metadata,
    }


async def _export(args: argparse.Namespace) -> int:
    async with _engine(args, embedder=False) as engine:
        total = await engine.admin.count()
        out = None if args.file == "-" else await anyio.open_file(args.file, "w", encoding="utf-8")
        done = 0
        try:
            while True:
                rows = await engine.admin.entries(limit=1000, offset=done)
                if not rows:
                    break
                text = "".join(json.dumps(_record(e), ensure_ascii=False) + "\n" for e in rows)
                if out is None:
                    sys.stdout.write(text)
                else:
                    await out.write(text)
                done += len(rows)
                _progress(done, total, sys.stderr, "export")
        finally:
            if out is not None:
                await out.aclose()
    print(f"exported {done} entries", file=sys.stderr)
    return 0


def _read_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        for lineno, line in enumerate(stream, start=1):
            if line.strip():
                yield lineno, json.loads(line)
    finally:
        if stream is not sys.stdin:
            stream.close()


def import_scope(rec: dict[str, Any], namespace: str | None, default: str) -> tuple[str, str] | None:
    """The ``(scope, namespace)`` a record is imported under, or None when it cannot be moved
    to ``namespace``.

    A scope is a hash of the namespace and the request's scope key (model, system prompt,
    ...: ``core/_types.scope_id``). Moving an exported entry to another namespace re-hashes
    its key, which entries keep in their metadata (``scope_key``); an entry without one is
    movable only if its key was empty (plain ``SemanticCache`` entries)."""
    raw_meta = rec.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    scope, own = rec.get("scope"), meta.get("namespace")
    if namespace is None:
        return (scope or scope_id(default, "")), (own if isinstance(own, str) else default)
    key = meta.get("scope_key")
    if not isinstance(key, str):
        if not scope:
            key = ""
        elif isinstance(own, str) and scope == scope_id(own, ""):
            key = ""
        else:
            return None
    return scope_id(namespace, key), namespace


async def _import(args: argparse.Namespace) -> int:
    try:
        records = list(_read_jsonl(args.file))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    for lineno, rec in records:
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("query"), str)
            or not isinstance(rec.get("answer"), str)
        ):
            print(f"line {lineno}: each record needs string 'query' and 'answer'", file=sys.stderr)
            return 1
        if import_scope(rec, args.namespace, "") is None:
            print(
                f"line {lineno}: this entry cannot be moved to namespace {args.namespace!r}: its scope "
                "key was not exported with it (an entry stored by an older cacheback); "
                "import it without --namespace",
                file=sys.stderr,
            )
            return 1
    async with _engine(args) as engine:
        assert engine.store is not None
        now = time.time()
        done = 0
        _progress(0, len(records), sys.stderr, "import")
        for start in range(0, len(records), _IMPORT_BATCH):
            chunk = [r for _, r in records[start : start + _IMPORT_BATCH]]
            vecs = await engine.embed([r["query"] for r in chunk])
            entries = []
            for i, r in enumerate(chunk):
                target = import_scope(r, args.namespace, engine.settings.storage.namespace)
                assert target is not None  # checked above
                scope, namespace = target
                expires = float(r.get("expires_at") or now + engine.settings.storage.cache_ttl)
                if expires <= now:
                    continue
                entries.append(
                    NewEntry(
                        scope=scope,
                        query=r["query"],
                        query_hash=text_hash(r["query"]),
                        answer=r["answer"],
                        vector=vecs[i] if vecs is not None else None,
                        created_at=float(r.get("created_at") or now),
                        expires_at=expires,
                        payload=base64.b64decode(r["payload"]) if r.get("payload") else None,
                        metadata={**dict(r.get("metadata") or {}), "namespace": namespace},
                    )
                )
            if entries:
                await engine.store.entries.put(entries)
            done += len(chunk)
            _progress(done, len(records), sys.stderr, "import")
    print(f"imported {done} records", file=sys.stderr)
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    from .storage.postgres._migrate import migrate_directory

    source = str(args.source or args.cache_dir or Settings.from_env().storage.cache_dir)
    report = await migrate_directory(
        source, args.to, progress=lambda done, total: _progress(done, total, sys.stderr, "migrate")
    )
    print(
        f"copied {report.entries_copied} entries"
        + (" (resumed)" if report.resumed else "")
        + f", {report.negatives_copied} blocklist entries"
        + (", counters" if report.counters_copied else ""),
        file=sys.stderr,
    )
    return 0


def _eval(argv: list[str]) -> int:
    if argv[:1] == ["synthesis"]:
        from .eval import synthesis_eval_main

        return synthesis_eval_main(argv[1:])
    from .eval import eval_main

    return eval_main(argv)


def _global_options(*, top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (``cacheback stats --cache-dir D``
    and ``cacheback --cache-dir D stats`` are the same). After the command, an option
    overrides the one before it; a command that was not given it leaves it alone."""
    g = argparse.ArgumentParser(add_help=False)
    unset = None if top else argparse.SUPPRESS
    g.add_argument(
        "--cache-dir", default=unset, help="cache directory (default: $CACHEBACK_CACHE_DIR or ~/.cacheback)"
    )
    g.add_argument(
        "--store-url",
        default=unset,
        help="postgresql://… : the shared store instead of the cache directory (env CACHEBACK_STORE_URL)",
    )
    g.add_argument(
        "--log-level",
        default=unset,
        help="print cacheback's log events from this level on, on stderr "
        "(default: $CACHEBACK_LOG_LEVEL or warning)",
    )
    return g


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(top=False)
    p = argparse.ArgumentParser(
        prog="cacheback",
        description="Inspect and manage a cacheback cache.",
        parents=[_global_options(top=True)],
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(parent: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, parents=[common], **kwargs)
        return parser

    s = command(sub, "stats", help="hit rate, entries, tiers, latency")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--proxy", default=None, metavar="URL", help="a running proxy's figures (key: CACHEBACK_ADMIN_KEY)"
    )
    e = command(sub, "entries", help="list cached entries")
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--offset", type=int, default=0)
    lk = command(sub, "lookup", help="look a query up and show the decision")
    lk.add_argument("query")
    lk.add_argument("--namespace", default=None)
    lk.add_argument("--threshold", type=float, default=None)
    lk.add_argument("--json", action="store_true")
    command(sub, "evict", help="remove expired entries")
    wr = command(sub, "report-wrong-hit", help="an entry served a wrong answer: not again for that question")
    wr.add_argument("entry_id", type=int)
    wr.add_argument(
        "--similarity", type=float, default=None,
        help="the wrong hit's similarity: the entry then needs it plus feedback_margin for a"
        " paraphrase hit (without it the entry is removed)",
    )  # fmt: skip
    rc = command(sub, "report-correct-hit", help="an entry served a right answer: relax its threshold a step")
    rc.add_argument("entry_id", type=int)
    c = command(sub, "clear", help="remove all entries (or one namespace's)")
    c.add_argument("--namespace", default=None)
    c.add_argument("--yes", action="store_true", help="really clear")
    n = command(sub, "negative", help="manage the negative cache (blocklist)")
    nsub = n.add_subparsers(dest="neg_cmd", required=True)
    na = command(nsub, "add")
    na.add_argument("query")
    na.add_argument("--reason", default="blocked")
    na.add_argument("--category", default="general")
    na.add_argument("--severity", type=int, default=1)
    nl = command(nsub, "list")
    nl.add_argument("--category", default=None)
    nl.add_argument("--limit", type=int, default=None)
    nr = command(nsub, "remove")
    nr.add_argument("entry_id", type=int)
    nc = command(nsub, "check")
    nc.add_argument("query")
    ex = command(sub, "export", help="write entries as JSON lines")
    ex.add_argument("file", nargs="?", default="-")
    im = command(sub, "import", help="read entries from JSON lines (query, answer, ...)")
    im.add_argument("file")
    im.add_argument(
        "--namespace", default=None, help="put every entry in this namespace (also entries of an export)"
    )
    mg = command(sub, "migrate", help="copy a cache directory into PostgreSQL (vectors included; resumable)")
    mg.add_argument("--from", dest="source", default=None, help="cache directory (default: --cache-dir)")
    mg.add_argument("--to", required=True, help="postgresql://… (the shared store)")
    sub.add_parser(
        "eval", help="hit-quality or synthesis evaluation (cacheback eval [synthesis] --help)", add_help=False
    )
    return p


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "stats": _stats,
    "entries": _entries,
    "lookup": _lookup,
    "evict": _evict,
    "clear": _clear,
    "negative": _negative,
    "report-wrong-hit": _report_wrong_hit,
    "report-correct-hit": _report_correct_hit,
    "export": _export,
    "import": _import,
    "migrate": _migrate,
}


def _split_eval(args: list[str]) -> tuple[list[str], list[str]] | None:
    """``eval`` has its own parser (cacheback.adapters.eval): the global options before it,
    and everything after it, which is its own."""
    k = 0
    while k < len(args):
        a = args[k]
        if a in ("--cache-dir", "--store-url", "--log-level"):
            k += 2
            continue
        if a.startswith("-"):
            k += 1
            continue
        return (args[:k], args[k + 1 :]) if a == "eval" else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    split = _split_eval(args_list)
    if split is not None:
        before, rest = split
        top = _global_options(top=True).parse_known_args(before)[0]
        log_to_stderr(top.log_level)
        return _eval(rest)
    parser = build_parser()
    args = parser.parse_args(args_list)
    log_to_stderr(args.log_level)
    if args.cache_dir is not None:
        args.cache_dir = str(Path(args.cache_dir).expanduser())
    try:
        return anyio.run(_COMMANDS[args.cmd], args)
    except CachebackError as exc:
        print(f"cacheback: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
