"""cacheback's loggers: structlog events sent through the standard ``logging`` tree under
the ``cacheback`` logger, silent unless someone asks for them.

A library must neither configure logging for its host nor print a line per request.
Importing cacheback therefore changes no global state: structlog stays unconfigured and
the root logger untouched. The ``cacheback`` logger gets a ``NullHandler`` (so Python's
last-resort handler prints nothing either); an application sees cacheback's events as
soon as it configures ``logging`` (they propagate to its handlers, at its levels). Only
the ``cacheback`` and ``cacheback-proxy`` commands attach a handler, via :func:`log_to_stderr`.

Events are rendered by structlog's processors (the application's, if it configured
structlog), and only once the stdlib level lets them through: a disabled debug event costs
one cached level check.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

ROOT = "cacheback"
_root = logging.getLogger(ROOT)
if not any(isinstance(h, logging.NullHandler) for h in _root.handlers):
    _root.addHandler(logging.NullHandler())


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced later)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class Logger:
    """``log.info("event", key=value)`` as with structlog, emitted on a stdlib logger."""

    __slots__ = ("_std",)

    def __init__(self, name: str) -> None:
        self._std = logging.getLogger(name)

    @property
    def debugging(self) -> bool:
        """Whether debug events are emitted (a cached level check): skip building them if not."""
        return self._std.isEnabledFor(logging.DEBUG)

    def debug(self, event: str, **kw: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit(logging.INFO, "info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit(logging.WARNING, "warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit(logging.ERROR, "error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, kw)

    def _emit(self, level: int, method: str, event: str, kw: dict[str, Any]) -> None:
        if not self._std.isEnabledFor(level):
            return
        # The processors are read at each event, so structlog's capture_logs and an
        # application's own structlog configuration apply. Imported here, not at the top:
        # structlog brings rich and pygments (~12k objects every full garbage collection
        # walks) into a host that never turns cacheback's logging on.
        import structlog

        bound = structlog.stdlib.BoundLogger(
            self._std, processors=structlog.get_config()["processors"], context={}
        )
        getattr(bound, method)(event, **kw)


def get_logger(name: str) -> Logger:
    """The logger for ``cacheback.<part>`` (``name`` is the full dotted name)."""
    return Logger(name)


def level_number(level: str | None) -> int:
    name = (level or os.environ.get("CACHEBACK_LOG_LEVEL") or "warning").upper()
    number = logging.getLevelName(name)
    return number if isinstance(number, int) else logging.WARNING


def log_to_stderr(level: str | None = None) -> None:
    """For cacheback's own commands only: print cacheback's events at ``level`` (default
    ``$CACHEBACK_LOG_LEVEL`` or ``warning``) on stderr. Touches the ``cacheback`` logger
    alone, never the root logger or structlog's global configuration."""
    _root.setLevel(level_number(level))
    if not any(isinstance(h, _Stderr) for h in _root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        _root.addHandler(handler)
    _root.propagate = False  # printed once, here, even if the root logger has handlers too
