"""Which kernel ``embed_compute="auto"`` runs MiniLM on: int8 or float32.

The int8 rewrite (``_int8``) multiplies 8-bit activations by 8-bit weights. That pays
only on CPUs with 8-bit dot-product instructions (x86 VNNI or AMX, Arm ``dotprod``):
without them each product takes several AVX2 steps, and on a 2-core AVX2 EPYC without
VNNI float32 ran 1.6x faster for one question and 2.4x faster for batches of 8-32
(docs/benchmarks.md, "Batch kernels"). So ``auto`` picks int8 where the CPU reports such
instructions and float32 where it reports its features without them. Where the features
cannot be read (no ``/proc/cpuinfo``), it keeps int8, the kernel used before ``auto``
existed; Apple silicon always has ``dotprod``.

The choice is a pure function of the CPU's feature flags, so every replica on the same
kind of machine runs the same kernel (vectors of the two kernels differ slightly), and
tests call it with any flags.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from pathlib import Path

__all__ = ["INT8_DOT_FLAGS", "cpu_flags", "parse_cpuinfo", "pick_compute", "resolved_compute"]

#: Feature flags (as Linux names them in /proc/cpuinfo) of 8-bit dot-product instructions.
INT8_DOT_FLAGS = frozenset(
    {
        "avx512_vnni",  # x86: AVX-512 VNNI (Intel Cascade Lake and later, AMD Zen 4 and later)
        "avx_vnni",  # x86: VEX-encoded VNNI (Intel Alder Lake and later, AMD Zen 5)
        "amx_int8",  # x86: AMX tiles (Intel Sapphire Rapids)
        "asimddp",  # arm64: dotprod (Neoverse N1 / Graviton 2 and later)
    }
)

_ARM = ("arm64", "aarch64")


def pick_compute(setting: str, *, flags: Iterable[str] | None, machine: str, system: str) -> str:
    """``"int8"`` or ``"float32"`` for ``embed_compute=setting`` on a CPU with these
    feature ``flags`` (None: unknown), ``platform.machine()`` and ``platform.system()``."""
    if setting != "auto":
        return setting
    if system == "Darwin" and machine.lower() in _ARM:
        return "int8"  # every Apple silicon core has dotprod; macOS has no /proc/cpuinfo
    if flags is None:
        return "int8"
    return "int8" if INT8_DOT_FLAGS & set(flags) else "float32"


def parse_cpuinfo(text: str) -> frozenset[str] | None:
    """The feature flags of /proc/cpuinfo's first processor (x86 ``flags``, Arm
    ``Features``), or None when the text lists none."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return None


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags, read once (None where /proc/cpuinfo is absent or unreadable)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def resolved_compute(setting: str) -> str:
    """``pick_compute`` for this machine."""
    return pick_compute(setting, flags=cpu_flags(), machine=platform.machine(), system=platform.system())
