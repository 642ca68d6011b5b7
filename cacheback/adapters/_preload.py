"""Loading the default embedder ahead of the first call.

A drop-in client opens its engine on its first cached call, and loading the model (an
onnxruntime session, ~1-4 s) would make that one call slow. ``start`` begins the load on a
worker thread as the client is constructed; the engine's open then ``take``s the result,
waiting only for what is left of the load.

One load per process and configuration is pending at a time (a client's copies, made by
``with_options``, start none of their own), and each is handed to one engine only. A load
belongs to the process that started it: a forked child never waits for a thread that did
not survive the fork, it loads its own model; and a fork made while a load is running
waits for that load to end first (see ``_finish_before_fork``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core._embedder_status import NoEmbedder
from ..core._ports import Embedder
from ..core._settings import Settings


@dataclass(slots=True)
class _Load:
    pid: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Embedder | NoEmbedder | None = None
    failed: bool = False


_FORK_WAIT_S = 60.0  # a fork waits at most this long for a load in progress

_lock = threading.Lock()
_pending: dict[tuple[Any, ...], _Load] = {}
_parents: list[_Load] = []  # a forked child's inherited loads (see _forget_after_fork)


def _key(settings: Settings) -> tuple[Any, ...]:
    """What the default embedder is built from (``_defaults.default_embedder``)."""
    e = settings.embedding
    return (e.model_dir, e.intra_op_threads, e.embed_compute, settings.storage.cache_dir)


def start(settings: Settings, load: Callable[[Settings], Embedder | NoEmbedder]) -> bool:
    """Begin ``load(settings)`` on a daemon thread, unless one is already pending here."""
    key, pid = _key(settings), os.getpid()
    with _lock:
        pending = _pending.get(key)
        if pending is not None and pending.pid == pid:
            return False
        job = _pending[key] = _Load(pid)

    def run() -> None:
        try:
            job.result = load(settings)
        except BaseException:  # the engine's own load raises it again, where it is seen
            job.failed = True
        finally:
            job.done.set()

    threading.Thread(target=run, name="cacheback-embedder-load", daemon=True).start()
    return True


def take(settings: Settings) -> tuple[bool, Embedder | NoEmbedder | None]:
    """``(True, embedder)`` from a load this process started (waiting for it to end), or
    ``(False, None)``: none pending here, or it failed (then the caller loads itself)."""
    with _lock:
        job = _pending.pop(_key(settings), None)
    if job is None or job.pid != os.getpid():
        return False, None
    job.done.wait()
    if job.failed:
        return False, None
    return True, job.result


def _finish_before_fork() -> None:
    """A fork waits for a load in progress: the loader thread holds import locks (of
    onnxruntime, ...) while it works, and a child forked meanwhile would inherit them held
    by a thread it does not have, and hang on its first import of the same module."""
    pid = os.getpid()
    for job in list(_pending.values()):
        if job.pid == pid:
            job.done.wait(_FORK_WAIT_S)


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at the fork
    # The parent's loads are not this process's. Kept referenced, never freed: freeing an
    # onnxruntime session in a forked child waits forever for the parent's pool threads.
    _parents.extend(_pending.values())
    _pending.clear()


os.register_at_fork(before=_finish_before_fork, after_in_child=_forget_after_fork)
