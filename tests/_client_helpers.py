"""Builders for cached clients pointed at the fake provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_provider import FakeProvider


def openai_args(fake: FakeProvider, cache_dir: Path, embedder: Any, **kw: Any) -> dict[str, Any]:
    return {
        "api_key": "sk-fake",
        "base_url": fake.openai_base_url,
        "max_retries": 0,
        "cache_dir": cache_dir,
        "embedder": embedder,
        **kw,
    }


def anthropic_args(fake: FakeProvider, cache_dir: Path, embedder: Any, **kw: Any) -> dict[str, Any]:
    return {
        "api_key": "sk-ant-fake",
        "base_url": fake.anthropic_base_url,
        "max_retries": 0,
        "cache_dir": cache_dir,
        "embedder": embedder,
        **kw,
    }


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
