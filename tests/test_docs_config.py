"""docs/configuration.md lists every engine setting, under its section, with its real
default and variable."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from cacheback import Settings
from cacheback.core._settings_sections import SECTIONS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
_ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", re.MULTILINE)
_SECTION = re.compile(r"^### `(\w+)`", re.MULTILINE)
# Defaults the page words instead of printing the value.
_WORDED = {"cache_dir": "`~/.cacheback`", "model_dir": "packaged MiniLM"}


def _documented() -> dict[str, tuple[str, str]]:
    text = PAGE.read_text(encoding="utf-8")
    return {m.group(1): (m.group(2).strip(), m.group(3)) for m in _ROW.finditer(text)}


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _number(text: str) -> float | None:
    try:
        return float(text.strip("`"))
    except ValueError:
        return None


def test_every_setting_is_documented_with_its_default() -> None:
    rows = _documented()
    for f in Settings.setting_fields():
        assert f.name in rows, f"{f.name} is missing from docs/configuration.md"
        default = f.default if f.default is not MISSING else None
        expected = _WORDED.get(f.name, _shown(default))
        shown, _ = rows[f.name]
        if _number(shown) is not None and _number(expected) is not None:
            assert _number(shown) == _number(expected), f.name  # 0.80 is 0.8
        else:
            assert shown == expected, f.name


def test_every_setting_names_its_environment_variable() -> None:
    rows = _documented()
    for f in Settings.setting_fields():
        _, env = rows[f.name]
        variable = "CACHEBACK_TTL" if f.name == "cache_ttl" else f"CACHEBACK_{f.name.upper()}"
        assert f"`{variable}`" in env, f.name
    # and that variable really sets it
    assert Settings.from_env({"CACHEBACK_TOP_K": "7"}).top_k == 7


def test_every_setting_is_listed_under_its_section() -> None:
    text = PAGE.read_text(encoding="utf-8").split("## Other environment variables")[0]
    heads = list(_SECTION.finditer(text))
    assert [h.group(1) for h in heads] == list(SECTIONS), "one heading per section, in order"
    for i, head in enumerate(heads):
        body = text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        cls = SECTIONS[head.group(1)]
        assert f"`{cls.__name__}`" in body, cls.__name__
        assert [m.group(1) for m in _ROW.finditer(body)] == [f.name for f in fields(cls)], head.group(1)
