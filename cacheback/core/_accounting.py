"""Cost accounting: what each tier spent and saved, estimated from the price table.

Every stored answer keeps the usage of the upstream call that produced it, so a later hit
knows what it saved; a synthesis saves the mean cost of its candidates' calls and spends
its own cheap call. Accounting never fails a request.
"""

from __future__ import annotations

from typing import Any

from cacheback._logging import get_logger

from ._costs import PriceTable, average_usage, clean_usage, load_price_table
from ._errors import ConfigError
from ._job import Job
from ._ports import LLMReply
from ._settings_sections import ObservabilitySettings
from ._stats import Stats
from ._types import Tier

log = get_logger("cacheback.engine")


def synthesized(job: Job) -> bool:
    return job.trace.get("synthesis") in ("ok", "streamed")


def avoided_usage(job: Job) -> dict[str, Any] | None:
    """The upstream call a synthesis stands for: the mean usage of its candidates' calls."""
    cands = job.outcome.candidates if job.outcome is not None else tuple(job.candidates)
    return average_usage([c.entry.metadata.get("usage") for c in cands])


def price_table(s: ObservabilitySettings) -> PriceTable:
    try:
        return load_price_table(s.prices)
    except ConfigError as exc:  # a bad price file must not take the cache down
        log.warning("price overrides ignored", error=str(exc))
        return PriceTable()


class CostAccounting:
    def __init__(self, stats: Stats, prices: PriceTable | None = None) -> None:
        self.stats = stats
        self.prices = prices or PriceTable()

    def entry_metadata(self, job: Job) -> dict[str, Any]:
        """What a stored answer cost (or, for a synthesized one, the upstream call it stands for)."""
        if synthesized(job):
            meta: dict[str, Any] = {"synthesized": True}
            avoided = avoided_usage(job)
            if avoided is not None:
                meta["usage"] = avoided
            return meta
        usage = clean_usage(job.usage)
        return {"usage": usage} if usage is not None else {}

    def record_upstream(self, job: Job, tier: Tier) -> None:
        # "answered": the provider answered (the caller may have dropped its response by now).
        answered = job.response is not None or job.trace.get("answered")
        if not answered or job.trace.get("usage_recorded") or job.trace.get("coalesced"):
            return
        usage = clean_usage(job.usage)
        if usage is None:  # a stream still running: recorded at its commit
            return
        job.trace["usage_recorded"] = True
        self.stats.record_usage(
            tier.value, usage["input_tokens"], usage["output_tokens"], self.prices.usage_cost(usage)
        )

    def synthesis_usage(self, reply: LLMReply) -> None:
        cost = self.prices.cost(reply.model, reply.input_tokens, reply.output_tokens)
        self.stats.record_usage(Tier.SYNTHESIS.value, reply.input_tokens, reply.output_tokens, cost)

    def account(self, job: Job) -> None:
        """Spend and savings of a finished job."""
        outcome = job.outcome
        if outcome is None:
            return
        try:
            tier = outcome.tier
            if tier.is_hit and outcome.entry is not None:
                self._saved(tier, outcome.entry.metadata.get("usage"))
            elif tier is Tier.SYNTHESIS and job.synthesis is not None:
                self._saved(tier, avoided_usage(job))
            elif tier in (Tier.UPSTREAM, Tier.BYPASS):
                self.record_upstream(job, tier)
        except Exception as exc:  # accounting must never fail a request
            log.warning("cost accounting failed", error=repr(exc))

    def _saved(self, tier: Tier, usage: Any) -> None:
        known = clean_usage(usage) if isinstance(usage, dict) else None
        if known is None:
            return
        self.stats.record_saved_tokens(tier.value, known["input_tokens"], known["output_tokens"])
        saved = self.prices.usage_cost(known)
        if saved:
            self.stats.record_saving(tier.value, saved)
