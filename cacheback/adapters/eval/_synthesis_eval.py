"""Synthesis quality evaluation: ``cacheback eval synthesis QUESTIONS.jsonl``.

Replays a question set through the three tiers of a real engine (embedded store in a
temporary directory, real embedder, the given endpoints) and scores every synthesized
answer against a direct upstream answer to the same question with a judge model.

Question set: JSON lines (or one JSON list) of objects::

    {"question": "How do plants make sugar from light?",
     "seed_questions": ["What is photosynthesis?", "What does chlorophyll do?"],
     "domain": "biology"}
    {"question": "...", "seeds": [{"question": "...", "answer": "..."}]}

``seed_questions`` are answered by the upstream model and cached first; ``seeds`` bring
their own answers (no upstream call). All seeds share one cache, as in real use. Then
each ``question`` runs through the engine: a verbatim hit, a synthesis from the cached
answers, or an upstream call (whose answer is cached for later questions).

For each synthesized answer the upstream model also answers the question directly (the
reference) and the judge scores both from 0 to 10; the quality ratio is
``candidate score / reference score``. The report gives the mean ratio (the product page
quotes 0.89) and the estimated cost per answer of each tier (prices: core/_costs.py,
overridable with ``CACHEBACK_PRICES``).

Endpoints are OpenAI-compatible chat completions APIs. Keys are read from environment
variables named on the command line and sent only to the base URL they are paired with:
``--upstream-key-env`` (default ``OPENAI_API_KEY``, only for api.openai.com) and
``--judge-key-env`` (default: the upstream key when the judge uses the upstream URL).
The synthesis endpoint follows the engine's rules (``OPENROUTER_API_KEY``, or
``--synthesis-base-url`` with ``--synthesis-key-env``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from ...core._call import Answer, EventReader, Text, UpstreamCall, Usage
from ...core._costs import PriceTable, load_price_table
from ...core._errors import CachebackError, ConfigError
from ...core._ports import LLM, Embedder, LLMReply
from ...core._settings import Settings
from ...core._types import LookupRequest, Tier
from ...engine._engine import AsyncEngine
from ..llm import OPENAI_BASE_URL, OpenAICompatibleLLM, llm_from_settings

__all__ = [
    "EvalItem",
    "ItemResult",
    "SynthesisEvalConfig",
    "SynthesisEvalReport",
    "format_synthesis_report",
    "load_questions",
    "parse_judge_scores",
    "run_synthesis_eval",
    "synthesis_eval_main",
]

NAMESPACE = "cacheback-eval"

JUDGE_SYSTEM = (
    "You are a strict, fair grader. Given a question, a reference answer and a candidate "
    "answer, score EACH answer on its own merits from 0 to 10 for correctness, "
    "completeness and helpfulness as an answer to the question (10 = excellent). Do not "
    "reward length. Reply with JSON only, exactly: "
    '{"reference": <0-10>, "candidate": <0-10>}'
)


@dataclass(frozen=True, slots=True)
class EvalItem:
    question: str
    seeds: tuple[tuple[str, str | None], ...] = ()  # (question, answer or None: ask upstream)
    domain: str | None = None


@dataclass(slots=True)
class ItemResult:
    question: str
    domain: str | None
    tier: str
    similarity: float | None
    answer: str | None = None
    reference: str | None = None
    reference_score: float | None = None
    candidate_score: float | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.candidate_score is None or not self.reference_score:
            return None
        return self.candidate_score / self.reference_score


@dataclass(slots=True)
class _Spend:
    calls: int = 0
    usd: float = 0.0
    unpriced: int = 0

    def add(self, reply: LLMReply, prices: PriceTable) -> None:
        self.calls += 1
        cost = prices.cost(reply.model, reply.input_tokens, reply.output_tokens)
        if cost is None:
            self.unpriced += 1
        else:
            self.usd += cost


@dataclass(slots=True)
class SynthesisEvalReport:
    items: list[ItemResult]
    tiers: dict[str, int]
    engine_cost: dict[str, dict[str, Any]]
    spend: dict[str, dict[str, float]]  # eval-only calls: seed, reference, judge

    @property
    def ratios(self) -> list[float]:
        return [r for r in (i.ratio for i in self.items) if r is not None]

    @property
    def mean_quality_ratio(self) -> float | None:
        return statistics.fmean(self.ratios) if self.ratios else None

    def cost_per_answer(self) -> dict[str, float | None]:
        """Estimated USD per answer served by each tier."""
        up = self.engine_cost.get("upstream", {})
        ref = self.spend.get("reference", {})
        # Reference calls are direct upstream answers to the same questions: count them too.
        up_calls = int(up.get("llm_calls", 0)) + int(ref.get("calls", 0))
        up_usd = float(up.get("spent_usd", 0.0)) + float(ref.get("usd", 0.0))
        syn = self.engine_cost.get("synthesis", {})
        synthesized = self.tiers.get(Tier.SYNTHESIS.value, 0)
        return {
            "verbatim": 0.0,
            "synthesis": float(syn.get("spent_usd", 0.0)) / synthesized if synthesized else None,
            "upstream": up_usd / up_calls if up_calls else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions": len(self.items),
            "tiers": self.tiers,
            "judged": len(self.ratios),
            "mean_quality_ratio": self.mean_quality_ratio,
            "median_quality_ratio": statistics.median(self.ratios) if self.ratios else None,
            "cost_per_answer_usd": self.cost_per_answer(),
            "engine_cost": self.engine_cost,
            "eval_spend": self.spend,
            "errors": sum(1 for i in self.items if i.error),
        }


@dataclass(frozen=True, slots=True)
class SynthesisEvalConfig:
    upstream: LLM
    judge: LLM
    synthesis: LLM
    mode: str = "auto"
    similarity_threshold: float = 0.92
    synthesis_threshold: float = 0.80
    top_k: int = 5
    stream: bool = False
    concurrency: int = 4
    max_tokens: int = 1024
    timeout_s: float = 60.0
    synthesis_timeout_s: float = 10.0
    settings_overrides: Mapping[str, Any] = field(default_factory=dict)


# -- input ---------------------------------------------------------------------------


def _item(raw: Any, where: str) -> EvalItem:
    if not isinstance(raw, dict) or not isinstance(raw.get("question"), str) or not raw["question"].strip():
        raise ValueError(f"{where}: each record needs a non-empty string 'question'")
    seeds: list[tuple[str, str | None]] = []
    for q in raw.get("seed_questions") or ():
        if not isinstance(q, str):
            raise ValueError(f"{where}: 'seed_questions' must be strings")
        seeds.append((q, None))
    for s in raw.get("seeds") or ():
        if not isinstance(s, dict) or not isinstance(s.get("question"), str):
            raise ValueError(f"{where}: each of 'seeds' needs a string 'question'")
        answer = s.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"{where}: a seed's 'answer' must be a string")
        seeds.append((s["question"], answer))
    domain = raw.get("domain")
    return EvalItem(raw["question"], tuple(seeds), str(domain) if domain is not None else None)


def load_questions(path: str | Path) -> list[EvalItem]:
    """Read a question set (JSON lines, or a JSON list). Blocking: file I/O."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return [_item(r, f"{path}[{i}]") for i, r in enumerate(json.loads(text))]
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            items.append(_item(json.loads(line), f"{path}:{lineno}"))
    return items


# -- judging ---------------------------------------------------------------------------

_OBJECT = re.compile(r"\{[^{}]*\}")
_NAMED = {k: re.compile(rf"{k}\W*(\d+(?:\.\d+)?)", re.IGNORECASE) for k in ("reference", "candidate")}


def _score(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return min(10.0, max(0.0, x)) if math.isfinite(x) else None


def parse_judge_scores(text: str) -> tuple[float, float] | None:
    """(reference, candidate) from the judge's reply, or None if it gave no scores."""
    for m in _OBJECT.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            ref, cand = _score(obj.get("reference")), _score(obj.get("candidate"))
            if ref is not None and cand is not None:
                return ref, cand
    # Not JSON after all: accept "reference: 8 ... candidate: 7".
    found = {k: p.search(text) for k, p in _NAMED.items()}
    ref_m, cand_m = found["reference"], found["candidate"]
    if ref_m is not None and cand_m is not None:
        ref, cand = _score(ref_m.group(1)), _score(cand_m.group(1))
        if ref is not None and cand is not None:
            return ref, cand
    return None


def judge_messages(question: str, reference: str, candidate: str) -> list[dict[str, str]]:
    user = (
        f"Question:\n{question}\n\n<reference_answer>\n{reference}\n</reference_answer>\n\n"
        f"<candidate_answer>\n{candidate}\n</candidate_answer>"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# -- the run ---------------------------------------------------------------------------


def _ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _upstream_call(llm: LLM, question: str, config: SynthesisEvalConfig) -> UpstreamCall:
    """The engine's upstream for one eval question: the upstream model, asked directly."""

    async def send() -> LLMReply:
        return await llm.complete(_ask(question), max_tokens=config.max_tokens, timeout=config.timeout_s)

    def extract(reply: LLMReply) -> tuple[Answer | None, Usage]:
        usage: Usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        usage["model"] = reply.model
        ok = reply.text.strip() and reply.finish_reason not in ("length", "content_filter")
        return (Text(reply.text) if ok else None), usage

    return UpstreamCall(send=send, streaming=config.stream, extract=extract, reader=_no_reader)


def _no_reader() -> EventReader:
    raise TypeError("the eval's upstream model answers whole")


async def run_synthesis_eval(
    items: Sequence[EvalItem],
    config: SynthesisEvalConfig,
    *,
    cache_dir: str | Path,
    embedder: Embedder | str | None = "auto",
    prices: PriceTable | None = None,
) -> SynthesisEvalReport:
    """Seed a fresh cache, replay the questions, judge the synthesized answers."""
    settings = Settings.from_env(
        cache_dir=str(cache_dir),
        namespace=NAMESPACE,
        synthesis_mode=config.mode,
        similarity_threshold=config.similarity_threshold,
        synthesis_threshold=config.synthesis_threshold,
        synthesis_top_k=config.top_k,
        top_k=max(config.top_k, 5),
        synthesis_timeout_s=config.synthesis_timeout_s,
        **dict(config.settings_overrides),
    )
    if prices is None:
        prices = await anyio.to_thread.run_sync(load_price_table, settings.observability.prices)
    spend = {"seed": _Spend(), "reference": _Spend(), "judge": _Spend()}
    limiter = anyio.CapacityLimiter(max(1, config.concurrency))
    scope = "eval"
    results: list[ItemResult | None] = [None] * len(items)

    async with AsyncEngine(settings, embedder=embedder, llm=config.synthesis) as engine:
        seeds: dict[str, str | None] = {}
        for item in items:
            for q, a in item.seeds:
                if seeds.get(q) is None:
                    seeds[q] = a

        async def seed(question: str, answer: str | None) -> None:
            async with limiter:
                usage: dict[str, Any] | None = None
                if answer is None:
                    try:
                        reply = await config.upstream.complete(
                            _ask(question), max_tokens=config.max_tokens, timeout=config.timeout_s
                        )
                    except Exception as exc:
                        print(f"seed failed ({type(exc).__name__}): {question!r}", file=sys.stderr)
                        return
                    spend["seed"].add(reply, prices)
                    answer = reply.text
                    usage = {
                        "input_tokens": reply.input_tokens,
                        "output_tokens": reply.output_tokens,
                        "model": reply.model,
                    }
                if answer.strip():
                    await engine.populate(
                        LookupRequest(question, scope=scope),
                        answer,
                        metadata={"usage": usage} if usage else None,
                    )

        async with anyio.create_task_group() as tg:
            for q, a in seeds.items():
                tg.start_soon(seed, q, a)

        async def one(index: int, item: EvalItem) -> None:
            async with limiter:
                results[index] = await _evaluate(engine, item, config, scope, spend, prices)

        async with anyio.create_task_group() as tg:
            for i, item in enumerate(items):
                tg.start_soon(one, i, item)
        stats = await engine.admin.stats()

    done = [r for r in results if r is not None]
    tiers: dict[str, int] = {}
    for r in done:
        tiers[r.tier] = tiers.get(r.tier, 0) + 1
    return SynthesisEvalReport(
        items=done,
        tiers=tiers,
        engine_cost=stats.get("cost", {}),
        spend={
            k: {"calls": v.calls, "usd": round(v.usd, 6), "unpriced": v.unpriced} for k, v in spend.items()
        },
    )


async def _evaluate(
    engine: AsyncEngine,
    item: EvalItem,
    config: SynthesisEvalConfig,
    scope: str,
    spend: dict[str, _Spend],
    prices: PriceTable,
) -> ItemResult:
    request = LookupRequest(item.question, scope=scope, want_synthesis=True)
    try:
        job = await engine.run(request, _upstream_call(config.upstream, item.question, config))
    except CachebackError as exc:
        return ItemResult(item.question, item.domain, "error", None, error=repr(exc))
    outcome = job.outcome
    if job.error is not None or outcome is None:
        return ItemResult(item.question, item.domain, "error", None, error=repr(job.error))
    tier = outcome.tier.value
    synthesis = job.synthesis
    if synthesis is not None and not isinstance(synthesis, str):
        synthesis = "".join([piece async for piece in synthesis])
    if synthesis is not None:
        answer: str | None = synthesis
    elif isinstance(job.response, LLMReply):
        answer = job.response.text
    else:
        answer = outcome.answer
    result = ItemResult(item.question, item.domain, tier, outcome.similarity, answer=answer)
    if outcome.tier is not Tier.SYNTHESIS or not answer:
        return result
    try:
        ref = await config.upstream.complete(
            _ask(item.question), max_tokens=config.max_tokens, timeout=config.timeout_s
        )
        spend["reference"].add(ref, prices)
        result.reference = ref.text
        verdict = await config.judge.complete(
            judge_messages(item.question, ref.text, answer), max_tokens=64, timeout=config.timeout_s
        )
        spend["judge"].add(verdict, prices)
    except Exception as exc:
        result.error = f"judging failed: {type(exc).__name__}: {exc}"
        return result
    scores = parse_judge_scores(verdict.text)
    if scores is None:
        result.error = f"the judge gave no scores: {verdict.text[:200]!r}"
        return result
    result.reference_score, result.candidate_score = scores
    return result


# -- report ------------------------------------------------------------------------------


def _usd(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.6f}"


def format_synthesis_report(report: SynthesisEvalReport) -> str:
    d = report.as_dict()
    lines = [f"questions            {d['questions']}"]
    lines.append("tiers                " + ", ".join(f"{k}={v}" for k, v in sorted(report.tiers.items())))
    mean = report.mean_quality_ratio
    if mean is None:
        lines.append("mean quality ratio   n/a (no synthesized answer was judged)")
    else:
        lines.append(
            f"mean quality ratio   {mean:.3f}  (synthesized vs direct upstream, {d['judged']} judged)"
        )
        lines.append(f"median quality ratio {d['median_quality_ratio']:.3f}")
    per = report.cost_per_answer()
    lines.append("cost per answer      (estimated)")
    for tier in ("verbatim", "synthesis", "upstream"):
        lines.append(f"  {tier:<18} {_usd(per[tier])}")
    if per["synthesis"] and per["upstream"]:
        lines.append(f"  synthesis is {per['upstream'] / per['synthesis']:.1f}x cheaper than upstream")
    syn = report.engine_cost.get("synthesis", {})
    lines.append(
        f"synthesis calls      {syn.get('llm_calls', 0)} (declined or failed ones included), "
        f"{_usd(syn.get('spent_usd'))}"
    )
    lines.append(
        "eval-only spend      "
        + ", ".join(f"{k} {v['calls']} calls {_usd(v['usd'])}" for k, v in report.spend.items())
    )
    if d["errors"]:
        lines.append(f"errors               {d['errors']}")
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cacheback eval synthesis",
        description="Score synthesized answers against direct upstream answers with a judge model.",
    )
    p.add_argument("questions", type=Path, help="question set: JSON lines (see the module docs)")
    p.add_argument("--upstream-base-url", default=OPENAI_BASE_URL)
    p.add_argument("--upstream-model", default="gpt-4o")
    p.add_argument(
        "--upstream-key-env",
        default=None,
        help="environment variable with the upstream key (default OPENAI_API_KEY, for api.openai.com only)",
    )
    p.add_argument("--synthesis-base-url", default=None, help="default: the engine's settings")
    p.add_argument("--synthesis-model", default=None)
    p.add_argument("--synthesis-key-env", default=None)
    p.add_argument("--judge-base-url", default=None, help="default: the upstream base URL")
    p.add_argument("--judge-model", default=None, help="default: the upstream model")
    p.add_argument("--judge-key-env", default=None)
    p.add_argument("--judge-temperature", type=float, default=0.0, help="negative: the endpoint's default")
    p.add_argument("--mode", choices=("auto", "always"), default="auto")
    p.add_argument("--similarity-threshold", type=float, default=0.92)
    p.add_argument("--synthesis-threshold", type=float, default=0.80)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--stream", action="store_true", help="synthesize through the streaming path")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per upstream or judge call")
    p.add_argument("--synthesis-timeout", type=float, default=10.0)
    p.add_argument("--cache-dir", default=None, help="default: a temporary directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, default=None, help="write per-question results as JSON lines")
    return p


def _key(env: Mapping[str, str], name: str | None, base_url: str, role: str) -> str:
    if name is None:
        if (urlsplit(base_url).hostname or "").lower() != "api.openai.com":
            raise ConfigError(f"--{role}-key-env is required for {base_url}")
        name = "OPENAI_API_KEY"
    key = env.get(name)
    if not key:
        raise ConfigError(f"the environment variable {name} (the {role} key) is not set")
    return key


def _endpoints(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[OpenAICompatibleLLM, OpenAICompatibleLLM, LLM]:
    upstream = OpenAICompatibleLLM(
        base_url=args.upstream_base_url,
        api_key=_key(env, args.upstream_key_env, args.upstream_base_url, "upstream"),
        model=args.upstream_model,
    )
    judge_url = args.judge_base_url or args.upstream_base_url
    same_host = judge_url.rstrip("/") == args.upstream_base_url.rstrip("/")
    judge_key_env = args.judge_key_env or (args.upstream_key_env if same_host else None)
    judge = OpenAICompatibleLLM(
        base_url=judge_url,
        api_key=_key(env, judge_key_env, judge_url, "judge"),
        model=args.judge_model or args.upstream_model,
        temperature=args.judge_temperature if args.judge_temperature >= 0 else None,
    )
    synth_settings: dict[str, Any] = {"synthesis_mode": "auto"}
    if args.synthesis_model:
        synth_settings["synthesis_model"] = args.synthesis_model
    if args.synthesis_base_url:
        synth_settings["synthesis_base_url"] = args.synthesis_base_url
        if args.synthesis_key_env:
            key = env.get(args.synthesis_key_env)
            if not key:
                raise ConfigError(f"the environment variable {args.synthesis_key_env} is not set")
            synth_settings["synthesis_api_key"] = key
    synthesis = llm_from_settings(Settings.from_env(dict(env), **synth_settings), env=env)
    if synthesis is None:
        raise ConfigError(
            "no synthesis endpoint: set OPENROUTER_API_KEY, or --synthesis-base-url, "
            "--synthesis-model and --synthesis-key-env"
        )
    return upstream, judge, synthesis


async def _run(args: argparse.Namespace, items: list[EvalItem], embedder: Embedder | str | None) -> int:
    try:
        upstream, judge, synthesis = _endpoints(args, os.environ)
    except ConfigError as exc:
        print(f"cacheback eval synthesis: {exc}", file=sys.stderr)
        return 2
    config = SynthesisEvalConfig(
        upstream=upstream,
        judge=judge,
        synthesis=synthesis,
        mode=args.mode,
        similarity_threshold=args.similarity_threshold,
        synthesis_threshold=args.synthesis_threshold,
        top_k=args.top_k,
        stream=args.stream,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        synthesis_timeout_s=args.synthesis_timeout,
    )
    try:
        if args.cache_dir is not None:
            report = await run_synthesis_eval(items, config, cache_dir=args.cache_dir, embedder=embedder)
        else:
            tmp = await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "cacheback-eval-")
            try:
                report = await run_synthesis_eval(items, config, cache_dir=tmp, embedder=embedder)
            finally:
                await anyio.to_thread.run_sync(shutil.rmtree, tmp, True)
    finally:
        for llm in (upstream, judge, synthesis):
            closer = getattr(llm, "aclose", None)
            if closer is not None:
                await closer()
    if args.out is not None:
        rows = "".join(
            json.dumps(
                {
                    "question": r.question,
                    "domain": r.domain,
                    "tier": r.tier,
                    "similarity": r.similarity,
                    "answer": r.answer,
                    "reference": r.reference,
                    "reference_score": r.reference_score,
                    "candidate_score": r.candidate_score,
                    "ratio": r.ratio,
                    "error": r.error,
                },
                ensure_ascii=False,
            )
            + "\n"
            for r in report.items
        )
        await anyio.Path(args.out).write_text(rows, encoding="utf-8")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        sys.stdout.write(format_synthesis_report(report))
    return 0


def synthesis_eval_main(
    argv: Sequence[str] | None = None, *, embedder: Embedder | str | None = "auto"
) -> int:
    """``cacheback eval synthesis``: 0 on success, 1 on bad input, 2 on bad use or configuration."""
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    for name in ("similarity_threshold", "synthesis_threshold"):
        if not 0.0 < getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1]")
    try:
        items = load_questions(args.questions)
    except (OSError, ValueError) as exc:
        print(f"cacheback eval synthesis: cannot read {args.questions}: {exc}", file=sys.stderr)
        return 1
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        print("cacheback eval synthesis: the question set is empty", file=sys.stderr)
        return 1
    # The report (maybe JSON) owns stdout: the engine's logs (if printed) go to stderr.
    try:
        return anyio.run(_run, args, items, embedder)
    except CachebackError as exc:
        print(f"cacheback eval synthesis: {exc}", file=sys.stderr)
        return 1
