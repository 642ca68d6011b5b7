"""``python -m cacheback.proxy``: run the caching proxy (the same as ``cacheback-proxy``).

The implementation lives in ``cacheback.adapters.proxy``; this module re-exports it.
"""

from __future__ import annotations

from .adapters.proxy import ProxyConfig, create_app, main

__all__ = ["ProxyConfig", "create_app", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
