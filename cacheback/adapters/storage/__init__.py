"""The embedded default store (SQLite + an on-disk HNSW or numpy index) and the indexes."""

from ._embedded import EmbeddedStore
from ._hnsw_index import HnswIndex
from ._index_files import open_index
from ._numpy_index import NumpyIndex

__all__ = ["EmbeddedStore", "HnswIndex", "NumpyIndex", "open_index"]
