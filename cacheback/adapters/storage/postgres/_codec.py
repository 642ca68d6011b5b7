"""pgvector's binary wire format for ``vector``, straight to and from numpy float32."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ....core._types import Vector

_HEAD = struct.Struct(">HH")  # dimension, unused


def encode(value: Any) -> bytes:
    """A numpy array, or bytes already encoded (how arrays of vectors are passed: the driver
    would take a numpy row for a nested array)."""
    if isinstance(value, bytes):
        return value
    arr = np.asarray(value, dtype=">f4").reshape(-1)
    return _HEAD.pack(arr.shape[0], 0) + arr.tobytes()


def decode(data: bytes) -> Vector:
    dim = _HEAD.unpack_from(data)[0]
    return np.frombuffer(data, dtype=">f4", count=dim, offset=_HEAD.size).astype(np.float32)


async def register(conn: Any) -> None:
    """asyncpg connection ``init``: numpy arrays in, numpy float32 arrays out."""
    await conn.set_type_codec("vector", schema="public", encoder=encode, decoder=decode, format="binary")
