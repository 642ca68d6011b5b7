"""LLM adapters for the synthesis tier (the ``LLM`` port)."""

from ._openai_compatible import (
    DEFAULT_OPENROUTER_MODEL,
    OPENAI_BASE_URL,
    OPENROUTER_BASE_URL,
    ChatStream,
    LLMError,
    OpenAICompatibleLLM,
    llm_from_settings,
    same_endpoint,
)

__all__ = [
    "DEFAULT_OPENROUTER_MODEL",
    "OPENAI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "ChatStream",
    "LLMError",
    "OpenAICompatibleLLM",
    "llm_from_settings",
    "same_endpoint",
]
