"""Whether two texts with the same words trade the roles of some of them: a swapped
conversion or route, parts traded around a frame, names that changed places."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ._features import _Features
from ._flags import _F_STOP, _FLAGS
from ._lexicon_words import (
    _COPULAS,
    _DIRECTION_MARKERS,
    _ROLE_PREPOSITIONS,
    _STOPWORDS,
    _SYMMETRIC_MARK,
)
from ._text import _stem

_DIRECTION_WINDOW = 4


def _swapped_around_marker(
    qw: Sequence[str], cw: Sequence[str], marker_words: frozenset[str] = _DIRECTION_MARKERS
) -> bool:
    """The words next to a marker changed sides: "convert PDF to Word" / "Word to PDF".

    For each side of the marker, the nearest shared word that did not stay on that side
    must have crossed to the other side, in both directions ("is renting cheaper than
    buying" / "is buying cheaper than renting": "cheaper" stays, the two others cross).
    Only words near the marker and occurring once in each text count, so a fronted
    clause or another reordered paraphrase does not trip it.
    """
    markers = marker_words.intersection(qw).intersection(cw)
    if not markers:
        return False
    shared = {
        w for w in set(qw) & set(cw)
        if w not in _STOPWORDS and w not in _DIRECTION_MARKERS
        and qw.count(w) == 1 and cw.count(w) == 1
    }
    if len(shared) < 2:
        return False
    win = _DIRECTION_WINDOW
    for marker in markers:
        qi = [k for k, w in enumerate(qw) if w == marker]
        ci = [k for k, w in enumerate(cw) if w == marker]
        if len(qi) != len(ci):
            continue
        for a, b in zip(qi, ci, strict=True):
            c_left = shared.intersection(cw[max(0, b - win) : b])
            c_right = shared.intersection(cw[b + 1 : b + 1 + win])
            x = next((w for w in reversed(qw[max(0, a - win) : a])
                      if w in shared and w not in c_left), None)
            y = next((w for w in qw[a + 1 : a + 1 + win] if w in shared and w not in c_right),
                     None)
            if x in c_right and y in c_left:
                return True
    return False


def _direction(qf: _Features, cf: _Features, close: bool) -> bool:
    for mine, theirs in ((qf.conversions, cf.conversions), (qf.routes, cf.routes)):
        if mine and theirs and any(
            (b, a) in theirs and (a, b) not in theirs for a, b in mine
        ):
            return True
    # A verb passive on one side only is a change of voice, which trades subject and
    # object without changing the question ("is the fee mentioned in the lease" / "does
    # the lease mention the fee").
    voice = qf.passive ^ cf.passive
    # Each test first looks at what it needs from both texts, derived once per text: the
    # same order words sorted (a block swap), a marker or a copula in both, two names in
    # both; most pairs stop there.
    return (
        (qf.order_sorted == cf.order_sorted and _block_swapped(qf.order, cf.order, voice)
         and _same_relations(qf.words, cf.words))
        or (close and not qf.markers.isdisjoint(cf.markers)
            and _swapped_around_marker(qf.words, cf.words))
        # Subject and complement traded around "is"/"are": "what share of doctors are
        # women" / "what share of women are doctors".
        # A word written the same in both texts changed no voice ("are women").
        or (close and not qf.copulas.isdisjoint(cf.copulas)
            and all(v in qf.word_set and v in cf.word_set for v in voice)
            and _swapped_around_marker(qf.words, cf.words, _COPULAS))
        or (not voice and len(qf.entities) > 1 and len(cf.entities) > 1
            and _roles_swapped(qf, cf))
    )


def _same_relations(qw: Sequence[str], cw: Sequence[str]) -> bool:
    """Whether both texts relate their parts with the same prepositions. A modifier put in
    front of a noun says what a prepositional phrase after it says ("a VPN for streaming
    Netflix" / "a Netflix streaming VPN", "bike lanes for commuters in Berlin" / "Berlin
    commuters bike lanes"): that reordering trades no roles. Parts traded around the same
    prepositions do ("Python tutorial for beginners" / "beginners tutorial for Python")."""
    return sorted(w for w in qw if w in _ROLE_PREPOSITIONS) == sorted(
        w for w in cw if w in _ROLE_PREPOSITIONS
    )


def _common_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for k, y in enumerate(b):
            cur.append(prev[k] + 1 if x == y else max(prev[k + 1], cur[k]))
        prev = cur
    return prev[-1]


_COMPOUND_GAP = 2  # "Siemens CEO", "CEO of Siemens": one name, not two roles


def _compound(words: Sequence[str], x: str, y: str) -> bool:
    """Whether names ``x`` and ``y`` (stems) stand together as one phrase: next to each
    other or joined by small words only ("Siemens CEO", "CEO of Siemens"), not by a verb
    ("Norway sues Sweden")."""
    xs = [k for k, w in enumerate(words) if _stem(w) == x]
    ys = [k for k, w in enumerate(words) if _stem(w) == y]
    if not xs or not ys:
        return True  # not found as words: do not judge
    for a in xs:
        for b in ys:
            lo, hi = min(a, b), max(a, b)
            if hi - lo <= _COMPOUND_GAP and all(
                _FLAGS.get(w, 0) & _F_STOP for w in words[lo + 1 : hi]
            ):
                return True
    return False


def _coordinated(qo: Sequence[str], words: Sequence[str], x: str, y: str) -> bool:
    """Whether names ``x`` and ``y`` (stems) are items of one list: joined by "and", "or",
    "vs" or a comma, with no preposition that gives either its own role in between ("Rust
    or Go", "NHS nurse or BBC editor" are a list; "import from Chile and sell in Peru" is
    two roles joined by "and")."""
    qx, qy = qo.index(x), qo.index(y)
    if _SYMMETRIC_MARK not in qo[min(qx, qy) : max(qx, qy)]:
        return False
    xs = [k for k, w in enumerate(words) if _stem(w) == x]
    ys = [k for k, w in enumerate(words) if _stem(w) == y]
    if not xs or not ys:
        return True  # a name of several words: trust the list mark
    lo, hi = min((abs(a - b), min(a, b), max(a, b)) for a in xs for b in ys)[1:]
    return not _ROLE_PREPOSITIONS.intersection(words[lo + 1 : hi])


def _roles_swapped(qf: _Features, cf: _Features) -> bool:
    """Two names both texts share traded places around a verb or a clause: "what can a
    tourist do in Spain that they cannot do in Portugal" / "... in Portugal that they
    cannot do in Spain", "if Norway sues Sweden" / "if Sweden sues Norway".

    What is not a trade of roles:

    - a name that merely moved: the texts must line up better with the two names
      exchanged than as written ("the best GMAT tutoring in Leeds" / "the best tutoring in
      Leeds for the GMAT");
    - the items of a list, whose order means nothing (see :func:`_coordinated`);
    - one name phrase said the other way round, a compound ("the CEO of Siemens" / "the
      Siemens CEO", see :func:`_compound`).
    """
    qo, co = qf.order, cf.order
    shared = [
        st for st in dict.fromkeys(_stem(e) for e in qf.entities & cf.entities)
        if qo.count(st) == 1 and co.count(st) == 1
    ]
    if len(shared) < 2:
        return False
    for x, y in itertools.combinations(shared, 2):
        qx, qy, cx, cy = qo.index(x), qo.index(y), co.index(x), co.index(y)
        if (qx < qy) == (cx < cy):
            continue
        if _coordinated(qo, qf.words, x, y) or _coordinated(co, cf.words, x, y):
            continue
        if _compound(qf.words, x, y) or _compound(cf.words, x, y):
            continue
        traded = [y if w == x else x if w == y else w for w in qo]
        if _common_length(traded, co) > _common_length(qo, co):
            return True
    return False


def _inverted(qo: Sequence[str], co: Sequence[str]) -> bool:
    """Whether two shared terms appear in opposite orders around a comparison ("A more
    than B" / "B less than A"); without one ("A and B differ" / "B and A are similar")
    order means nothing."""
    if not _DIRECTION_MARKERS.intersection(qo) and not _DIRECTION_MARKERS.intersection(co):
        return False
    shared = [w for w in qo if w in co and qo.count(w) == 1 and co.count(w) == 1
              and w != _SYMMETRIC_MARK and w not in _DIRECTION_MARKERS]
    pos = [co.index(w) for w in shared]
    return any(p > q for p, q in itertools.pairwise(pos))


def _block_swapped(
    qo: Sequence[str], co: Sequence[str], voice: frozenset[str] = frozenset()
) -> bool:
    """The same words with two parts traded around a frame that stays in place.

    "Is Tolstoy better than Dickens" / "Is Dickens better than Tolstoy", "can chemistry
    graduates apply for physics" / "can physics graduates apply for chemistry". The frame
    between the parts must be non-empty (an adjacent swap is word order: "fast online" /
    "online fast") and hold no "and"/"or"/comma, where order means nothing ("Python or
    Java"), nor a verb in ``voice`` (passive in one text only: the voice changed, not the
    roles).
    """
    if len(qo) != len(co) or qo == co or sorted(qo) != sorted(co):
        return False
    i = 0
    while qo[i] == co[i]:
        i += 1
    j = len(qo)
    while qo[j - 1] == co[j - 1]:
        j -= 1
    q, c = qo[i:j], co[i:j]
    n = len(q)
    for a in range(1, n - 1):  # len(A)
        for b in range(1, n - a):  # len(B); the frame M = q[a : n - b] is non-empty
            if (
                q[:a] == c[n - a :]
                and q[n - b :] == c[:b]
                and q[a : n - b] == c[b : n - a]
                and _SYMMETRIC_MARK not in q
                and not voice.intersection(q[a : n - b])
            ):
                return True
    return False
