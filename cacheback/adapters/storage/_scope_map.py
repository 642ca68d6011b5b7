"""The scope of every indexed entry, as the search filter sees it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence


class ScopeMap:
    """Scope of every indexed entry as a small int code, with per-scope counts.

    Search filters on it (only ids of the asked scope come back from the index) and uses the
    counts to choose between an exact scan of a small scope and the index.
    """

    def __init__(self) -> None:
        self.load([])

    def load(self, rows: Sequence[tuple[int, str]]) -> None:
        # Built with C-level iteration: this runs over every entry on open.
        ids = [r[0] for r in rows]
        scopes = [r[1] for r in rows]
        self._code: dict[str, int] = {s: i for i, s in enumerate(dict.fromkeys(scopes))}
        self._name: dict[int, str] = {i: s for s, i in self._code.items()}
        self._of: dict[int, int] = dict(zip(ids, map(self._code.__getitem__, scopes), strict=True))
        self._count: dict[int, int] = dict(Counter(self._of.values()))
        self._next = len(self._code)

    def __len__(self) -> int:
        return len(self._of)

    def size(self, scope: str) -> int:
        code = self._code.get(scope)
        return 0 if code is None else self._count[code]

    def add(self, ids: Sequence[int], scopes: Sequence[str]) -> None:
        for label, scope in zip(ids, scopes, strict=True):
            if label in self._of:
                continue
            code = self._code.get(scope)
            if code is None:
                code = self._next
                self._next += 1
                self._code[scope] = code
                self._name[code] = scope
                self._count[code] = 0
            self._of[label] = code
            self._count[code] += 1

    def remove(self, ids: Sequence[int]) -> None:
        for label in ids:
            code = self._of.pop(label, None)
            if code is None:
                continue
            left = self._count[code] - 1
            if left:
                self._count[code] = left
            else:  # forget empty scopes so codes do not pile up
                del self._count[code]
                del self._code[self._name.pop(code)]

    def allowed(self, scope: str) -> Callable[[int], bool]:
        code = self._code.get(scope, -1)
        scope_of = self._of.get
        return lambda label: scope_of(label) == code
