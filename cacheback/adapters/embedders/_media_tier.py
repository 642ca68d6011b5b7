"""The media tier: a near-identical image (or audio clip) is keyed as the one it matches.

Every image and audio part is keyed exactly by the hash of its bytes (``providers._media``).
When an embedder is configured for its modality, this tier embeds an inline part (once per
distinct digest) and looks for a known part of the same modality whose vector has cosine
>= ``media_similarity_threshold``; the part then takes that part's id in the scope, so a
re-encoded or resized picture finds the answers stored for the original, and the question's
text is still matched as usual within that scope: both must match. A part with no match is
known under its own id from then on. Each digest's id is remembered (a SQLite file in the
cache directory), so an exact repeat always keeps its id.

Embedders load on first use, on the worker thread that embeds; a model that cannot load or
a part that cannot be decoded leaves the exact key alone: the tier can only add hits
between near-identical media, never lose the exact ones.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from cacheback._logging import get_logger
from cacheback.core._errors import CachebackError
from cacheback.core._ports import Embedder, MediaEmbedder, is_media_embedder
from cacheback.core._settings import Settings
from cacheback.core._types import Vector

from ..providers._media import MediaPart
from ..providers._scope import RequestKey
from ..storage._sqlite_fork import sqlite_work_sync

__all__ = ["MEDIA_KINDS", "MediaTier"]

MEDIA_KINDS = ("image", "audio")
KEYS_FILE = "media_keys.sqlite"

_log = get_logger("cacheback.media")


class _Slot:
    """One modality's embedder: configured by name or object, loaded on first use."""

    def __init__(self, kind: str, spec: MediaEmbedder | str | None, model_dir: Path | None, threads: int):
        self.kind, self.spec, self.model_dir, self.threads = kind, spec, model_dir, threads
        self.instance: MediaEmbedder | None = spec if is_media_embedder(spec) else None
        # An object is used as given (it may load its model in embed_media, on the worker thread).
        self.state = "off" if spec is None else "ready" if self.instance is not None else "not loaded"
        self.error: str | None = None
        self._lock = threading.Lock()
        if spec is not None and not (isinstance(spec, str) or is_media_embedder(spec)):
            raise CachebackError(f"the {kind} embedder must be a name or a MediaEmbedder, not {spec!r}")

    @property
    def configured(self) -> bool:
        return self.spec is not None and self.state != "failed"

    def get(self) -> MediaEmbedder | None:
        """The loaded embedder (blocking: call on a worker thread), or None if it cannot run."""
        if self.instance is not None and self.state in ("loaded", "ready"):
            return self.instance
        with self._lock:
            if self.state == "loaded" and self.instance is not None:
                return self.instance
            if self.state == "failed" or not isinstance(self.spec, str):
                return None
            self.state = "loading"
            try:
                from ._registry import create_media

                embedder = create_media(self.spec, model_dir=self.model_dir, intra_op_threads=self.threads)
                loader = getattr(embedder, "load", None)
                if callable(loader):
                    loader()
            except Exception as exc:  # a missing file, a broken model: exact keys only
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                _log.warning("media_embedder_unavailable", modality=self.kind, reason=self.error)
                return None
            self.instance, self.state = embedder, "loaded"
            return embedder

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": None, "dim": None, "state": self.state, "loaded": False}
        if self.spec is None:
            return out
        out["name"] = self.spec if isinstance(self.spec, str) else self.spec.name
        if self.instance is not None and self.state in ("loaded", "ready"):
            # Never read dim of a model that is not loaded: reading it would load it here.
            detail = self.instance.describe()
            out["loaded"] = bool(detail.get("loaded", True))
            out["dim"] = (
                detail.get("dim") if "dim" in detail else self.instance.dim if out["loaded"] else None
            )
            out["detail"] = detail
        if self.error:
            out["error"] = self.error
        return out


class _Known:
    """The known media of one modality and model: their vectors and ids."""

    def __init__(self, dim: int) -> None:
        self.ids: list[str] = []
        self.vectors: Vector = np.zeros((0, dim), dtype=np.float32)

    def nearest(self, vector: Vector) -> tuple[str, float] | None:
        if not self.ids:
            return None
        scores = self.vectors @ vector
        best = int(np.argmax(scores))
        return self.ids[best], float(scores[best])

    def add(self, media_id: str, vector: Vector) -> None:
        self.ids.append(media_id)
        self.vectors = np.vstack([self.vectors, vector[None, :]])


class MediaTier:
    """Resolves the media ids of a key (see the module doc); ``describe`` for stats/health."""

    def __init__(
        self,
        settings: Settings,
        embedders: Mapping[str, MediaEmbedder | str | None] | None = None,
        *,
        path: Path | None = None,
    ) -> None:
        media, threads = settings.media, settings.embedding.intra_op_threads
        chosen: dict[str, Any] = {"image": media.image_embedder, "audio": media.audio_embedder}
        chosen.update(embedders or {})
        dirs = {"image": media.image_model_dir, "audio": media.audio_model_dir}
        self.threshold = media.media_similarity_threshold
        self.slots = {k: _Slot(k, chosen.get(k) or None, dirs[k], threads) for k in MEDIA_KINDS}
        self.path = path if path is not None else Path(settings.storage.cache_dir) / KEYS_FILE
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], str] = {}  # (model, digest) → id
        self._known: dict[str, _Known] = {}  # model → its known media
        self._loaded_models: set[str] = set()
        self._limiter = anyio.CapacityLimiter(1)

    @property
    def enabled(self) -> bool:
        return any(slot.configured for slot in self.slots.values())

    def describe(self) -> dict[str, Any]:
        return {kind: slot.describe() for kind, slot in self.slots.items()}

    def embedders(self, text: Embedder | None) -> dict[str, Any]:
        """Each modality's embedder: name, dimension and load state (stats and /health)."""
        out: dict[str, Any] = {"text": {"name": None, "dim": None, "state": "off", "loaded": False}}
        if text is not None:
            detail = text.describe()
            loaded = bool(detail.get("loaded", True))
            out["text"] = {
                "name": text.name,
                "dim": detail.get("dim"),
                "state": "loaded" if loaded else "not loaded",
                "loaded": loaded,
            }
        out.update(self.describe())
        return out

    async def resolve(self, key: RequestKey) -> RequestKey:
        """``key`` with near-identical media keyed as the media they match (off the loop)."""
        wanted = [m for m in key.media if m.data is not None and self.slots[m.kind].configured]
        if not key.cacheable or not wanted:
            return key
        ids = await anyio.to_thread.run_sync(self._resolve, key.media, limiter=self._limiter)
        return key.with_media_ids(ids)

    # -- on a worker thread ----------------------------------------------------------

    def _resolve(self, media: Sequence[MediaPart]) -> list[str]:
        return [self._one(part) for part in media]

    def _one(self, part: MediaPart) -> str:
        slot = self.slots[part.kind]
        if part.data is None or not slot.configured:
            return part.digest
        embedder = slot.get()
        if embedder is None:
            return part.digest
        model = f"{part.kind}:{embedder.name}:{embedder.dim}"
        with self._lock:
            self._load(model, embedder.dim)
            known_id = self._ids.get((model, part.digest))
        if known_id is not None:
            return known_id
        try:
            vector = np.asarray(embedder.embed_media([part.data]), dtype=np.float32)[0]
        except Exception as exc:  # undecodable media, a failing BYO embedder: exact key
            _log.info("media_not_embedded", modality=part.kind, error=f"{type(exc).__name__}: {exc}")
            return part.digest
        with self._lock:
            known = self._known[model]
            found = known.nearest(vector)
            media_id = found[0] if found is not None and found[1] >= self.threshold else part.digest
            if (model, part.digest) in self._ids:  # another thread got there first
                return self._ids[(model, part.digest)]
            self._ids[(model, part.digest)] = media_id
            if media_id == part.digest:
                known.add(media_id, vector)
            self._save(model, part.digest, media_id, vector if media_id == part.digest else None)
        return media_id

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS media_keys (model TEXT NOT NULL, digest TEXT NOT NULL,"
            " media_id TEXT NOT NULL, vector BLOB, PRIMARY KEY (model, digest))"
        )
        return conn

    def _load(self, model: str, dim: int) -> None:
        if model in self._loaded_models:
            return
        known = _Known(dim)
        try:
            with sqlite_work_sync():  # no fork while it is open (storage/_sqlite_fork)
                with self._connect() as conn:
                    rows = conn.execute(
                        "SELECT digest, media_id, vector FROM media_keys WHERE model = ?", (model,)
                    ).fetchall()
                conn.close()
        except sqlite3.Error as exc:
            _log.warning("media_keys_unreadable", path=str(self.path), error=str(exc))
            rows = []
        vectors = []
        for digest, media_id, blob in rows:
            self._ids[(model, digest)] = media_id
            if blob is not None and len(blob) == dim * 4:
                known.ids.append(media_id)
                vectors.append(np.frombuffer(blob, dtype=np.float32))
        if vectors:
            known.vectors = np.vstack(vectors)
        self._known[model] = known
        self._loaded_models.add(model)

    def _save(self, model: str, digest: str, media_id: str, vector: Vector | None) -> None:
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        try:
            with sqlite_work_sync():
                with self._connect() as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO media_keys (model, digest, media_id, vector)"
                        " VALUES (?, ?, ?, ?)",
                        (model, digest, media_id, blob),
                    )
                conn.close()
        except sqlite3.Error as exc:  # the tier still works in memory
            _log.warning("media_keys_unwritable", path=str(self.path), error=str(exc))
