"""Estimated cost of model calls: a documented price table, overridable.

Prices are list prices in USD per 1M tokens (input, output) for standard, non-batch,
non-cached usage, as published by OpenAI, Anthropic and Google (Gemini API, also the
OpenRouter pass-through price) in 2025. They are estimates for ``stats``: providers
change prices, discount cached input and bill some models in tiers; override what
matters to you.

Overrides, later wins:

* the environment variable ``CACHEBACK_PRICES``: the path of a JSON file;
* ``Settings.prices``: a dict (or the path of a JSON file).

Both map a model id to ``{"input": usd_per_1m, "output": usd_per_1m}`` or to
``[input, output]``. Lookup normalises the id: lower case, a provider prefix such as
``openai/`` or ``google/`` dropped, and the longest table key that is a prefix of the
id ending at a ``-``, ``:`` or ``@`` boundary wins, so ``gpt-4o-2024-08-06`` uses
``gpt-4o`` and ``claude-sonnet-4-20250514`` uses ``claude-sonnet-4``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError

PRICES_ENV = "CACHEBACK_PRICES"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


#: The built-in table. Keys are normalised model ids (see the module docstring).
DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "chatgpt-4o-latest": Price(5.00, 15.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # Google Gemini (prompts up to 200k tokens)
    "gemini-2.5-pro": Price(1.25, 10.00),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.0-flash": Price(0.10, 0.40),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
    "gemini-1.5-pro": Price(1.25, 5.00),
    "gemini-1.5-flash": Price(0.075, 0.30),
}

_BOUNDARIES = ("-", ":", "@")


def normalize_model(model: str) -> str:
    """``"google/Gemini-2.5-Flash-Lite"`` -> ``"gemini-2.5-flash-lite"``."""
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    return name


def _parse_price(model: str, value: Any) -> Price:
    try:
        if isinstance(value, Mapping):
            return Price(float(value["input"]), float(value["output"]))
        if isinstance(value, list | tuple) and len(value) == 2:
            return Price(float(value[0]), float(value[1]))
    except (KeyError, TypeError, ValueError):
        pass
    raise ConfigError(
        f"price for {model!r} must be {{'input': usd_per_1m, 'output': usd_per_1m}} or [input, output]"
    )


def parse_prices(raw: Mapping[str, Any]) -> dict[str, Price]:
    """A validated price mapping from a JSON-like dict."""
    if not isinstance(raw, Mapping):
        raise ConfigError("prices must be a mapping of model id to prices")
    return {normalize_model(str(k)): _parse_price(str(k), v) for k, v in raw.items()}


def read_price_file(path: str | Path) -> dict[str, Price]:
    """Blocking (file I/O): call it off the event loop."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the price file {str(p)!r}: {exc}") from exc
    return parse_prices(data)


class PriceTable:
    """Model id -> :class:`Price`, with prefix matching and per-call cost estimates."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES if prices is None else prices)
        self._memo: dict[str, Price | None] = {}

    def with_overrides(self, overrides: Mapping[str, Price]) -> PriceTable:
        return PriceTable({**self._prices, **overrides})

    def price(self, model: str | None) -> Price | None:
        """The price of ``model``, or None when the table does not know it."""
        if not model:
            return None
        if model in self._memo:
            return self._memo[model]
        name = normalize_model(model)
        found = self._prices.get(name)
        if found is None:
            best = ""
            for key in self._prices:
                if len(key) > len(best) and name.startswith(key) and name[len(key)] in _BOUNDARIES:
                    best = key
            found = self._prices[best] if best else None
        self._memo[model] = found
        return found

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """Estimated USD for one call, or None for an unknown model."""
        p = self.price(model)
        return None if p is None else p.cost(input_tokens, output_tokens)

    def usage_cost(self, usage: Mapping[str, Any] | None) -> float | None:
        """Cost of a usage record ``{"input_tokens", "output_tokens", "model"}``."""
        if not usage:
            return None
        try:
            return self.cost(
                str(usage.get("model") or ""),
                int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0),
            )
        except (TypeError, ValueError):
            return None

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {k: {"input": v.input, "output": v.output} for k, v in sorted(self._prices.items())}


def load_price_table(
    overrides: Mapping[str, Any] | str | Path | None = None, env: Mapping[str, str] | None = None
) -> PriceTable:
    """The default table, then ``$CACHEBACK_PRICES`` (a JSON file), then ``overrides``.

    Blocking when a file is named: call it off the event loop.
    """
    env = os.environ if env is None else env
    table = PriceTable()
    path = env.get(PRICES_ENV)
    if path:
        table = table.with_overrides(read_price_file(path))
    if isinstance(overrides, str | Path):
        # Settings.from_env reads CACHEBACK_PRICES into ``prices`` too: do not apply it twice.
        if not path or Path(overrides).expanduser() != Path(path).expanduser():
            table = table.with_overrides(read_price_file(overrides))
    elif overrides:
        table = table.with_overrides(parse_prices(overrides))
    return table


def estimate_tokens(text: str) -> int:
    """A rough token count (about 4 characters a token) when a provider reports none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def clean_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"input_tokens", "output_tokens", "model"}`` from a reply's usage, or None if empty."""
    if not usage:
        return None
    try:
        inp = int(usage.get("input_tokens") or 0)
        out = int(usage.get("output_tokens") or 0)
    except (TypeError, ValueError):
        return None
    if inp <= 0 and out <= 0:
        return None
    return {"input_tokens": inp, "output_tokens": out, "model": str(usage.get("model") or "")}


def average_usage(usages: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The mean of the known usage records (the model of the first one), or None.

    Stands in for the upstream call a synthesis avoided: its candidates answered
    related questions in the same scope, hence with the same model.
    """
    known = [u for u in (clean_usage(x) for x in usages) if u is not None]
    if not known:
        return None
    n = len(known)
    return {
        "input_tokens": round(sum(u["input_tokens"] for u in known) / n),
        "output_tokens": round(sum(u["output_tokens"] for u in known) / n),
        "model": known[0]["model"],
    }
