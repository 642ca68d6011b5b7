"""The embedded default store (SQLite + an on-disk HNSW or numpy index) and the indexes."""

from ._embedded import EmbeddedStore, open_index
from ._hnsw_index import HnswIndex
from ._numpy_index import NumpyIndex

__all__ = ["EmbeddedStore", "HnswIndex", "NumpyIndex", "open_index"]
