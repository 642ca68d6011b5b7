"""embed_device: which onnxruntime providers the embedder asks for, and the errors when a
GPU is asked for and cannot be had. Pure decisions over provider names (no GPU here)."""

from __future__ import annotations

import pytest

from cacheback import Settings
from cacheback.adapters.embedders import MiniLMEmbedder
from cacheback.adapters.embedders._device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    available_providers,
    check_session_providers,
    parse_device,
    plan_device,
)
from cacheback.core._errors import ConfigError

CPU_ONLY = [CPU_PROVIDER]
WITH_GPU = ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER]


def test_parse_device_accepts_the_documented_forms() -> None:
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device(" CUDA ") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)
    assert parse_device("auto") == ("auto", 0)
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:1", ""):
        with pytest.raises(ConfigError, match="embed_device"):
            parse_device(bad)


def test_cpu_is_the_default_and_keeps_int8_kernels() -> None:
    assert Settings().embed_device == "cpu"
    plan = plan_device("cpu", WITH_GPU)  # a GPU present is not used unless asked for
    assert plan.device == "cpu"
    assert plan.providers == (CPU_PROVIDER,)
    assert plan.int8_kernels


def test_cuda_when_available_uses_the_cuda_provider_with_cpu_fallback_and_larger_runs() -> None:
    plan = plan_device("cuda:1", WITH_GPU)
    assert plan.device == "cuda"
    assert plan.providers == ((CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER)
    assert not plan.int8_kernels  # MatMulNBits int8 is a CPU kernel: the GPU runs the float graph
    assert plan.max_run_rows > plan_device("cpu", WITH_GPU).max_run_rows


def test_auto_picks_cuda_only_when_offered() -> None:
    assert plan_device("auto", WITH_GPU).device == "cuda"
    assert plan_device("auto", CPU_ONLY).device == "cpu"


def test_cuda_without_onnxruntime_gpu_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="onnxruntime-gpu") as info:
        plan_device("cuda", CPU_ONLY)
    assert CPU_PROVIDER in str(info.value)  # says what this onnxruntime does offer


def test_a_session_that_silently_fell_back_to_cpu_is_refused() -> None:
    plan = plan_device("cuda", WITH_GPU)
    with pytest.raises(ConfigError, match="could not start"):
        check_session_providers(plan, [CPU_PROVIDER])
    check_session_providers(plan, [CUDA_PROVIDER, CPU_PROVIDER])  # got it: no error
    check_session_providers(plan_device("cpu", CPU_ONLY), [CPU_PROVIDER])


def test_settings_validate_and_read_the_device_from_the_environment() -> None:
    assert Settings.from_env({"CACHEBACK_EMBED_DEVICE": "cuda:0"}).embed_device == "cuda:0"
    with pytest.raises(ConfigError, match="embed_device"):
        Settings(embed_device="tpu")


@pytest.mark.skipif(CUDA_PROVIDER in available_providers(), reason="this machine has onnxruntime-gpu")
def test_the_real_embedder_refuses_cuda_on_this_cpu_only_onnxruntime() -> None:
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        MiniLMEmbedder(device="cuda")
    embedder = MiniLMEmbedder(device="auto")  # falls back to the CPU, and says so
    assert embedder.describe()["device"] == "cpu"
