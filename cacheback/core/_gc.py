"""Shorter full garbage collections for a long-running process: freeze what startup built.

A full (generation 2) collection walks every object the collector tracks. After startup a
cache process holds tens of thousands of them that live as long as the process (modules,
classes, functions, the provider SDKs' models, the guard's tables): on a 2-core machine a
full collection of those takes 30-200 ms, and the request that happens to trigger one
waits for all of it. ``gc.freeze()`` moves everything alive into a permanent generation
that no collection walks again; collections then walk only what was made after.

The trade: a reference cycle among frozen objects is never collected (objects freed by
reference counting still are), so freeze once the process is built and warmed up, not in
a loop. This changes the interpreter's global collector, so the library never calls it on
its own: the proxy (whose process is its own) does; an application embedding the library
may call :func:`freeze_gc` itself.
"""

from __future__ import annotations

import gc


def freeze_gc() -> int:
    """Collect once, then move every object alive into the collector's permanent generation
    (``gc.freeze()``): later full collections skip them. Returns how many objects are
    frozen in all.

    Call it once your application has started and served its first requests (modules
    imported lazily, pools and models built), e.g. at the end of a warm-up; calling it
    again later freezes what was built since. ``gc.unfreeze()`` undoes it. cacheback
    never calls this in your process by itself.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
