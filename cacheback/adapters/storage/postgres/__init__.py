"""The shared store: PostgreSQL with pgvector, for many replicas (``pip install cacheback-ai[postgres]``)."""

from ._store import PostgresStore

__all__ = ["PostgresStore"]
