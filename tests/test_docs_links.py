"""The README and the pages under ``docs/``: every relative link resolves, every file of the
repository they name in backticks exists, the README stays short, and its first two shell
blocks are the two quick-start commands.

Anchors (``page.md#section``) are checked against the headings of the target page, with
GitHub's rule for turning a heading into an anchor.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 300

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
# `cacheback/core/_settings.py`, `tests/data/near_miss.jsonl`, `loadtests/bench_proxy.py`, ...
_REPO_PATH = re.compile(r"`((?:cacheback|tests|loadtests|scripts|\.ci)/[^`\s]+)`")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (links in code are not links)."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order."""
    blocks: list[tuple[str, str]] = []
    info: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if info is None and _FENCE.match(stripped):
            info, body = stripped[3:].strip(), []
        elif info is not None and _FENCE.match(stripped):
            blocks.append((info, "\n".join(body)))
            info = None
        elif info is not None:
            body.append(line)
    return blocks


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed
    (except ``-`` and ``_``), spaces turned into ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: keep its text
    text = text.replace("`", "").replace("*", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if m is None:
            continue
        slug = anchor(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    """Link targets that point inside the repository (not URLs, not mail)."""
    targets = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            targets.append(target)
    return targets


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_file():
            broken.append(f"{target}: no file {_shown(dest)}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {_shown(dest)}")
    return broken


def missing_paths(path: Path) -> list[str]:
    """Repository files named in backticks (prose and code alike) that do not exist."""
    named = _REPO_PATH.findall(path.read_text(encoding="utf-8"))
    return sorted({p for p in named if not (ROOT / p).exists()})


def test_anchor_follows_githubs_rule() -> None:
    assert anchor("A hit is the provider's stored response, replayed") == (
        "a-hit-is-the-providers-stored-response-replayed"
    )
    assert anchor("Measuring quality: `cacheback eval synthesis`") == (
        "measuring-quality-cacheback-eval-synthesis"
    )
    assert anchor("PostgreSQL (future work)") == "postgresql-future-work"


def test_broken_links_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Real section\n", encoding="utf-8")
    page.write_text(
        "# Page\n\n[ok](other.md#real-section) [gone](missing.md) [no anchor](other.md#nope)\n"
        "[self](#page) [web](https://example.com/x.md)\n\n```\n[in code](missing-too.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["other.md#real-section", "missing.md", "other.md#nope", "#page"]
    found = broken_links(page)
    assert len(found) == 2
    assert found[0].startswith("missing.md") and found[1].startswith("other.md#nope")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_files_exist(page: Path) -> None:
    assert missing_paths(page) == []


def test_missing_paths_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("see `cacheback/__init__.py` and `cacheback/no_such_module.py`\n", encoding="utf-8")
    assert missing_paths(page) == ["cacheback/no_such_module.py"]


def test_docs_have_links_to_check() -> None:
    assert DOCS.is_dir()
    assert len(relative_links(README)) >= 10  # the README points into docs/


def test_docs_index_lists_every_page() -> None:
    index = DOCS / "README.md"
    listed = {Path(t.partition("#")[0]).name for t in relative_links(index)}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages - listed == set()


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_readme_opens_with_the_two_commands() -> None:
    bash = [body for info, body in _fenced_blocks(README.read_text(encoding="utf-8")) if info == "bash"]
    assert len(bash) >= 2
    assert "cacheback-proxy" in bash[0]
    assert "pytest" in bash[1]
