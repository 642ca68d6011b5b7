"""embed_compute="auto": int8 where the CPU multiplies 8-bit values natively, float32 elsewhere."""

from __future__ import annotations

import pytest

from cacheback.adapters.embedders._cpu_kernels import cpu_flags, parse_cpuinfo, pick_compute
from cacheback.core._errors import ConfigError
from cacheback.core._settings import Settings

ZEN1_FLAGS = "fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni"
CASCADE_LAKE_FLAGS = "fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni"
GRAVITON2_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp"
GRAVITON1_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"


def test_an_avx2_cpu_without_vnni_runs_float32() -> None:
    assert linux(ZEN1_FLAGS) == "float32"


def linux(flags: str, machine: str = "x86_64", setting: str = "auto") -> str:
    return pick_compute(setting, flags=flags.split(), machine=machine, system="Linux")


def test_cpus_with_8_bit_dot_products_run_int8() -> None:
    assert linux(CASCADE_LAKE_FLAGS) == "int8"
    assert linux("avx2 avx_vnni") == "int8"
    assert linux("avx2 amx_int8") == "int8"
    assert linux(GRAVITON2_FEATURES, "aarch64") == "int8"
    assert linux(GRAVITON1_FEATURES, "aarch64") == "float32"


def test_unknown_features_keep_int8_and_apple_silicon_is_int8() -> None:
    assert pick_compute("auto", flags=None, machine="AMD64", system="Windows") == "int8"
    assert pick_compute("auto", flags=None, machine="arm64", system="Darwin") == "int8"


def test_an_explicit_setting_is_never_overridden() -> None:
    assert linux(ZEN1_FLAGS, setting="int8") == "int8"
    assert linux(CASCADE_LAKE_FLAGS, setting="float32") == "float32"


def test_cpuinfo_is_read_from_the_first_flags_or_features_line() -> None:
    x86 = f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {ZEN1_FLAGS}\n\nprocessor\t: 1\nflags\t\t: x\n"
    assert parse_cpuinfo(x86) == frozenset(ZEN1_FLAGS.split())
    arm = f"processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: {GRAVITON2_FEATURES}\nCPU implementer\t: 0x41\n"
    assert "asimddp" in (parse_cpuinfo(arm) or ())
    assert parse_cpuinfo("processor\t: 0\nmodel name\t: something\n") is None
    assert parse_cpuinfo("") is None


def test_this_machine_reports_its_flags_once() -> None:
    first = cpu_flags()
    assert first is cpu_flags()  # read once
    assert first is None or len(first) > 0


def test_auto_is_the_default_and_a_valid_setting() -> None:
    assert Settings().embed_compute == "auto"
    assert Settings.from_env({"CACHEBACK_EMBED_COMPUTE": "auto"}).embed_compute == "auto"
    with pytest.raises(ConfigError, match="auto, int8, float32"):
        Settings(embed_compute="bf16")
