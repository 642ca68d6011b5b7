"""Read an ONNX file's initializers and nodes with nothing but NumPy.

The NumPy fallback runs exactly when the ONNX stack is missing or broken, and
the platforms without onnxruntime wheels are usually those without ``onnx``
wheels too; ``onnx`` also drags in a compiled protobuf. An ONNX file is a plain
protobuf message, and a BERT graph needs only a few of its fields, so they are
decoded here from the wire format (about a second for the 23 MB packaged model;
tensor bytes are sliced, never copied field by field).

Fields read (field numbers from onnx.proto3): ModelProto.graph (7);
GraphProto.node (1), .initializer (5); NodeProto.input (1), .output (2),
.op_type (4), .attribute (5); AttributeProto.name (1), .f (2), .i (3);
TensorProto.dims (1), .data_type (2), .float_data (4), .int32_data (5),
.int64_data (7), .name (8), .raw_data (9), .data_location (14).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cacheback.core._errors import EmbedderError

__all__ = ["OnnxGraph", "OnnxNode", "read_onnx"]

# TensorProto.DataType -> NumPy dtype (the types a BERT export uses).
_DTYPES: dict[int, type[np.generic]] = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    11: np.float64,
}


@dataclass(slots=True)
class OnnxNode:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, float | int] = field(default_factory=dict)


@dataclass(slots=True)
class OnnxGraph:
    nodes: list[OnnxNode]
    initializers: dict[str, np.ndarray[Any, Any]]


def read_onnx(path: Path) -> OnnxGraph:
    """The nodes and initializers of the model at ``path`` (EmbedderError if unreadable)."""
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise EmbedderError(f"could not read {path}: {exc}") from exc
    try:
        graph = next((value for number, value in _fields(data) if number == 7), None)
        if not isinstance(graph, memoryview):
            raise ValueError("no graph")
        nodes: list[OnnxNode] = []
        inits: dict[str, np.ndarray[Any, Any]] = {}
        for number, value in _fields(graph):
            if number == 1 and isinstance(value, memoryview):
                nodes.append(_node(value))
            elif number == 5 and isinstance(value, memoryview):
                name, array = _tensor(value)
                inits[name] = array
    except (ValueError, IndexError, struct.error) as exc:
        raise EmbedderError(f"{path} is not a readable ONNX model: {exc}") from exc
    return OnnxGraph(nodes, inits)


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field: ints for varint/fixed, slices for length-delimited."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise ValueError("truncated field")
            yield number, data[pos : pos + size]
            pos += size
        elif wire == 5:
            yield number, int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire == 1:
            yield number, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise ValueError("expected a string field")
    return bytes(value).decode("utf-8")


def _node(data: memoryview) -> OnnxNode:
    node = OnnxNode("", [], [])
    for number, value in _fields(data):
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5 and isinstance(value, memoryview):
            name, scalar = _attribute(value)
            if scalar is not None:
                node.attributes[name] = scalar
    return node


def _attribute(data: memoryview) -> tuple[str, float | int | None]:
    name, scalar = "", None
    for number, value in _fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2 and isinstance(value, int):  # float, fixed32
            scalar = struct.unpack("<f", value.to_bytes(4, "little"))[0]
        elif number == 3 and isinstance(value, int):  # int64, two's complement varint
            scalar = value - (1 << 64) if value >= 1 << 63 else value
    return name, scalar


def _packed_varints(value: int | memoryview) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _tensor(data: memoryview) -> tuple[str, np.ndarray[Any, Any]]:
    name, dtype_code, dims, raw = "", 0, [], None
    typed: list[int] = []
    floats: list[memoryview | int] = []
    for number, value in _fields(data):
        if number == 1:
            dims.extend(_packed_varints(value))
        elif number == 2 and isinstance(value, int):
            dtype_code = value
        elif number == 4:
            floats.append(value)
        elif number in (5, 7):
            typed.extend(_packed_varints(value))
        elif number == 8:
            name = _text(value)
        elif number == 9 and isinstance(value, memoryview):
            raw = value
        elif number == 14 and value == 1:
            raise ValueError(f"tensor {name or '?'} keeps its data in an external file")
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise ValueError(f"tensor {name!r} has unsupported data type {dtype_code}")
    shape = tuple(dims)
    if raw is not None:
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    elif floats:
        parts = [
            np.frombuffer(v, dtype="<f4")
            if isinstance(v, memoryview)
            else np.array([v], dtype="<u4").view("<f4")
            for v in floats
        ]
        array = np.concatenate(parts).astype(dtype)
    else:
        signed = [v - (1 << 64) if v >= 1 << 63 else v for v in typed]
        array = np.array(signed, dtype=np.int64).astype(dtype)
    return name, array.reshape(shape)
