"""Quiet defaults for structlog when the host application has not configured it.

A library must not print a line per request: unless the application configured
structlog itself, cacheback logs at ``CACHEBACK_LOG_LEVEL`` (default ``warning``).
"""

from __future__ import annotations

import logging
import os

import structlog


def configure_default_logging(level: str | None = None) -> None:
    if structlog.is_configured() and level is None:
        return
    name = (level or os.environ.get("CACHEBACK_LOG_LEVEL", "warning")).upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(numeric))
