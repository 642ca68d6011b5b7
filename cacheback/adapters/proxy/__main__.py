"""``python -m cacheback.adapters.proxy``: the same as ``cacheback-proxy``."""

from . import main

raise SystemExit(main())
