"""``cacheback stats`` as plain text: the dashboard's figures in compact tables.

A pure function of the view ``_dashboard_view.dashboard_view`` builds, so the terminal and
the page cannot disagree. Text that came from callers (questions, negative entries) is
shown with control characters escaped, so it cannot move the cursor or forge lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TIER_ORDER = ("exact", "verbatim", "synthesis", "upstream", "miss", "blocked", "bypass", "error")
_WIDTH = 60  # characters of caller text per line


def clean(text: object, width: int = _WIDTH) -> str:
    """One line of at most ``width`` characters, control characters escaped."""
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return s if len(s) <= width else s[: width - 1] + "…"


def size(n: object) -> str:
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _ordered(names: set[str]) -> list[str]:
    return sorted(names, key=lambda t: (_TIER_ORDER.index(t) if t in _TIER_ORDER else 99, t))


def _ms(row: Mapping[str, Any] | None, key: str) -> str:
    return f"{row[key]:.1f}" if row and isinstance(row.get(key), int | float) else "-"


def render(view: Mapping[str, Any], source: str) -> str:
    out: list[str] = []
    t = view["totals"]
    out.append(f"cacheback stats ({source})")
    store = view["health"]["store"]
    if not store["ok"]:
        out.append(f"cache DEGRADED: {clean(store.get('error') or 'the store cannot be used', 200)}")
    out.append(
        f"lookups {t['lookups']}  hits {t['hits']}  hit rate {t['hit_rate']:.1%}  "
        f"cache errors {t['cache_errors']}"
    )
    out.append(
        f"saved ${t['net_saved_usd']:.6f} net (${t['saved_usd']:.6f} avoided, "
        f"${t['spent_usd']:.6f} spent, {t['savings_rate']:.1%} less than without the cache)  "
        f"tokens saved {t['saved_tokens']}"
    )
    entries = view["entries"]
    out.append(
        f"entries {entries['count'] if entries['count'] is not None else '-'} "
        f"({size(entries['size_bytes'])})  negative entries {view['negative']['count']}"
    )

    cost: Mapping[str, Mapping[str, Any]] = view.get("cost") or {}
    if cost:
        out.append("")
        out.append("cost (estimated USD)")
        out.append(
            f"  {'tier':<10}{'requests':>9}{'llm calls':>10}{'tokens in':>11}{'tokens out':>11}"
            f"{'spent':>12}{'saved':>12}{'tokens saved':>14}"
        )
        for tier, row in cost.items():
            saved_tokens = row.get("saved_input_tokens", 0) + row.get("saved_output_tokens", 0)
            out.append(
                f"  {tier:<10}{row['requests']:>9}{row['llm_calls']:>10}{row['input_tokens']:>11}"
                f"{row['output_tokens']:>11}{row['spent_usd']:>12.6f}{row['saved_usd']:>12.6f}{saved_tokens:>14}"
            )

    series = view.get("series")
    latency: Mapping[str, Any] = view.get("latency_ms") or {}
    tiers: Mapping[str, int] = t.get("tiers") or {}
    names = {n for n, v in tiers.items() if v} | set(latency)
    recent: dict[str, tuple[int, int]] = {}
    if series:
        hour, day = series["hour"]["tiers"], series["day"]["tiers"]
        names |= set(hour) | set(day)
        recent = {n: (sum(hour.get(n, ())), sum(day.get(n, ()))) for n in names}
    out.append("")
    out.append(
        f"  {'tier':<10}{'total':>8}{'last hour':>11}{'last day':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    for name in _ordered(names):
        h, d = recent.get(name, (None, None))
        lat = latency.get(name)
        out.append(
            f"  {name:<10}{tiers.get(name, '-')!s:>8}{'-' if h is None else h!s:>11}"
            f"{'-' if d is None else d!s:>10}"
            f"{_ms(lat, 'p50_ms'):>9}{_ms(lat, 'p95_ms'):>9}{_ms(lat, 'p99_ms'):>9}"
        )
    if not names:
        out.append("  (no requests yet)")
    if not series:
        out.append("  (last hour / last day: only a running proxy keeps them; use --proxy URL)")

    out.append("")
    top = view.get("top_questions")
    out.append("top cached questions")
    if top is None:
        out.append("  (this store does not rank entries by hits)")
    elif not top:
        out.append("  (no hits yet)")
    for q in top or ():
        text = clean(q["query"]) if "query" in q else "(text hidden: CACHEBACK_DASHBOARD_CONTENT=1 shows it)"
        out.append(f"  #{q['entry_id']:<7}{q['hits']:>6} hits  {text}")

    out.append("")
    negatives = view["negative"]["entries"]
    out.append("negative cache")
    if not negatives:
        out.append("  (empty)")
    for e in negatives:
        out.append(
            f"  #{e['entry_id']:<7}{e['false_positives']:>3} false positives  "
            f"{clean(e['category'], 16)}/{clean(e['reason'], 24)}  {clean(e['query'])}"
        )

    vetoes = view.get("guard_vetoes")
    out.append("")
    if vetoes is None:
        out.append("guard vetoes: only a running proxy counts them (use --proxy URL)")
    else:
        listed = ", ".join(f"{clean(r, 40)} {n}" for r, n in vetoes.items()) or "none"
        out.append(f"guard vetoes: {listed}")

    health = view["health"]
    store_bits = [b for b in (store.get("backend"), store.get("index")) if b]
    if store.get("index_size") is not None:
        store_bits.append(f"{store['index_size']} vectors")
    if store.get("error"):
        store_bits.append(str(store["error"]))
    parts = [f"store {'ok' if store['ok'] else 'DOWN'} ({', '.join(store_bits)})"]
    for e in health["embedders"]:
        detail = ", ".join(str(x) for x in (e.get("model"), e.get("compute")) if x)
        parts.append(f"embedder {e.get('name')} {'ok' if e['ok'] else 'DOWN'} ({detail})")
    if view.get("worker") is not None:
        parts.insert(0, f"proxy worker {view['worker']} {'ready' if health['ready'] else 'NOT READY'}")
    out.append("health: " + " | ".join(parts))
    return "\n".join(out) + "\n"
