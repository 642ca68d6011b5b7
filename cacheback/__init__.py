"""cacheback: a universal semantic cache for the OpenAI and Anthropic APIs."""

__version__ = "0.1.1"
