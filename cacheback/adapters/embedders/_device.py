"""Where the embedder runs: onnxruntime's CPU provider (the default) or CUDA.

``embed_device`` is ``"cpu"``, ``"cuda"`` (``"cuda:N"`` for another GPU) or ``"auto"`` (CUDA
when this onnxruntime offers it, else CPU). CUDA needs the ``onnxruntime-gpu`` package in
place of ``onnxruntime``; asking for it without that package is a ConfigError, never a
silent CPU run. The decisions here are pure functions over onnxruntime's provider names,
so they are tested without a GPU; the CUDA path itself has not been run on hardware.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cacheback.core._errors import ConfigError

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "DevicePlan",
    "available_providers",
    "check_session_providers",
    "parse_device",
    "plan_device",
]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

#: Rows per inference run. On CPU attention cost grows with padding and there is no
#: parallelism to fill, so runs stay short; a GPU is fed larger runs.
CPU_MAX_RUN_ROWS = 64
CUDA_MAX_RUN_ROWS = 256


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """What an embedder does on the chosen device."""

    device: str  # "cpu" or "cuda"
    device_id: int
    providers: tuple[Any, ...]  # as onnxruntime.InferenceSession(providers=...) takes them
    max_run_rows: int
    int8_kernels: bool  # the int8 rewrite (MatMulNBits, CPU kernels) is used only on CPU


def parse_device(value: str) -> tuple[str, int]:
    """``"cpu"``, ``"auto"``, ``"cuda"`` or ``"cuda:N"`` as (kind, device id); ConfigError otherwise."""
    text = value.strip().lower()
    if text in ("cpu", "auto", "cuda"):
        return text, 0
    kind, sep, index = text.partition(":")
    if kind == "cuda" and sep and index.isdigit():
        return "cuda", int(index)
    raise ConfigError(f"embed_device must be 'cpu', 'cuda', 'cuda:N' or 'auto', not {value!r}")


def plan_device(value: str, available: Sequence[str]) -> DevicePlan:
    """The plan for ``embed_device=value`` given onnxruntime's available providers."""
    kind, device_id = parse_device(value)
    has_cuda = CUDA_PROVIDER in available
    if kind == "auto":
        kind = "cuda" if has_cuda else "cpu"
    if kind == "cpu":
        return DevicePlan("cpu", 0, (CPU_PROVIDER,), CPU_MAX_RUN_ROWS, int8_kernels=True)
    if not has_cuda:
        offered = ", ".join(available) or "none"
        raise ConfigError(
            f"embed_device={value!r} needs onnxruntime's {CUDA_PROVIDER}, and this onnxruntime"
            f" offers: {offered}. Install onnxruntime-gpu in place of onnxruntime"
            " (pip uninstall onnxruntime && pip install onnxruntime-gpu) with a matching CUDA,"
            " or set embed_device='cpu'"
        )
    providers = ((CUDA_PROVIDER, {"device_id": device_id}), CPU_PROVIDER)
    return DevicePlan("cuda", device_id, providers, CUDA_MAX_RUN_ROWS, int8_kernels=False)


def check_session_providers(plan: DevicePlan, session_providers: Sequence[str]) -> None:
    """onnxruntime quietly falls back to CPU when the CUDA libraries fail to load; a
    session that was asked for CUDA and did not get it is refused with the reason."""
    if plan.device == "cuda" and CUDA_PROVIDER not in session_providers:
        raise ConfigError(
            f"onnxruntime could not start {CUDA_PROVIDER} (the session runs on"
            f" {', '.join(session_providers) or 'nothing'}): check the CUDA and cuDNN"
            " libraries onnxruntime-gpu needs, or set embed_device='cpu'"
        )


def available_providers() -> list[str]:
    """onnxruntime's execution providers in this environment ([] without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())
