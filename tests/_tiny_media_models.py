"""Tiny ONNX stand-ins with the real models' signatures (no weights can be downloaded here).

CLIP's image encoder: ``pixel_values`` (n, 3, S, S) → ``image_embeds`` (n, d) (built by
tests/test_embedder_clip.py); Whisper's encoder: ``input_features`` (n, 80, 3000) →
``last_hidden_state`` (n, 1500, d), a strided convolution over time as Whisper's second
convolution is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WHISPER_DIM = 8


def build_whisper_encoder(path: Path, *, mels: int = 80, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(WHISPER_DIM, mels, 3)).astype(np.float32), "conv_w")
    nodes = [
        helper.make_node("Conv", ["input_features", "conv_w"], ["conv"], strides=[2], pads=[1, 1]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("Transpose", ["act"], ["last_hidden_state"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_whisper_encoder",
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, ["n", mels, 3000])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["n", 1500, WHISPER_DIM])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
