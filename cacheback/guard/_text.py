"""Text normalisation and tokenising: canonical punctuation and contractions, tokens
that keep code, numbers and symbols whole, and a crude stemmer."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ._lexicon_names import _PROGRAMMING_LANGUAGES

# One token: backticked code, a currency symbol, a number (separators, decimals, a unit or
# suffix glued on), a word that may carry dots, underscores, hyphens, ++ or #, an operator.
_TOKEN_RE = re.compile(
    r"""
    (?P<code>`[^`]{1,80}`)
    | (?P<cur>[$€£¥₹₩₽₿])
    | (?P<num>\d+(?:[.,:]\d+)*(?:°[cCfF]|[A-Za-z%]+(?:-\d+)?)?)
    | (?P<word>[A-Za-z_][\w]*(?:\+\+|\#)?(?:[.\-][A-Za-z0-9_]+)*(?:\(\))?)
    | (?P<op>===|!==|==|!=|<=|>=|->|=>|\+=|-=|\*\*|::|&&|\|\||<<|>>|→)
    """,
    re.VERBOSE,
)
# The same, each token with the text between it and the previous one (lazily: the first
# place where any kind matches, as a plain search for the next token would find it).
_GAPPED_TOKEN_RE = re.compile(r"(?s)(.*?)(?:" + _TOKEN_RE.pattern + ")", re.VERBOSE)
_SENTENCE_ENDS = frozenset('.?!:;"([\n')
_PUNCT = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "´": "'", "–": "-", "—": "-"})

# Each rewrite with a piece of text every one of its matches contains (lower-cased), so a
# text without it skips the pattern (see ``_normalise``).
_REWRITES = (
    # Idioms whose negation asks nothing: "Should X be banned or not?", "why or why not".
    (re.compile(r",?\s*\b(?:why\s+)?or\s+(?:why\s+)?not\b", re.I), "", "not"),
    (re.compile(r"\bno\.\s*(?=\d)", re.I), "number ", "no."),
    (re.compile(r"\bnot\s+only\b", re.I), "", "not"),
    (re.compile(r"\bno\s+longer\b", re.I), "not", "longer"),
    (re.compile(r"^\s*(?:yes|no)\s*,\s*", re.I), "", ","),  # an answer's "No, ..." is not negation
    (re.compile(r"\bdo(?:n't|\s+not)\s+forget\b", re.I), "remember", "forget"),
    (re.compile(r"\bunited\s+states(?:\s+of\s+america)?\b", re.I), "USA", "united"),
    (re.compile(r"\bunited\s+kingdom\b", re.I), "UK", "united"),
    (re.compile(r"\bnew\s+york\s+city\b", re.I), "NYC", "york"),
    (re.compile(r"\b(can)'t\b", re.I), r"\1 not", "'"),
    (re.compile(r"\bwon't\b", re.I), "will not", "'"),
    (re.compile(r"\bshan't\b", re.I), "shall not", "'"),
    (re.compile(r"n't\b", re.I), " not", "'"),
    (re.compile(r"\b(?:dont|doesnt|didnt|isnt|arent|wasnt|werent|cant|wont|shouldnt|"
                r"wouldnt|couldnt|havent|hasnt)\b", re.I), " not", "nt"),
    (re.compile(r"\b(let)'s\b", re.I), r"\1 us", "'"),
    (re.compile(r"\b(it|that|what|where|who|how|when|why|there|here|he|she)'s\b", re.I),
     r"\1 is", "'"),
    (re.compile(r"'re\b", re.I), " are", "'"),
    (re.compile(r"'ve\b", re.I), " have", "'"),
    (re.compile(r"'ll\b", re.I), " will", "'"),
    (re.compile(r"\b(i)'m\b", re.I), r"\1 am", "'"),
    (re.compile(r"'d\b", re.I), " would", "'"),
    (re.compile(r"'s\b"), "", "'"),  # possessive
    (re.compile(r"(?<=s)'(?=\s|$)"), "", "'"),
)


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A deliberately crude suffix stripper: enough to match plurals and tenses."""
    w = word
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "slz":
                w = w[:-1]
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class _Token:
    """One token. A plain class with slots: a text makes a dozen of them, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost more than the rest
    of tokenising. Never changed after tokenising."""

    __slots__ = ("initial", "kind", "low", "sep", "text")

    def __init__(self, text: str, low: str, kind: str, initial: bool, sep: bool = False) -> None:
        self.text = text  # as written (case kept)
        self.low = low
        self.kind = kind  # "word", "num", "code", "cur", "op"
        self.initial = initial  # first token of a sentence: its capital says nothing
        self.sep = sep  # a comma, slash or ampersand right before it

    def __repr__(self) -> str:
        return f"_Token({self.text!r}, {self.kind!r}, initial={self.initial}, sep={self.sep})"


def _normalise(text: str) -> str:
    if not text.isascii():  # ASCII is its own NFKC form, has no accents and no curly quotes
        text = _strip_accents(unicodedata.normalize("NFKC", text)).translate(_PUNCT)
    if not text.isascii():
        # Ignoring case, a few non-ASCII letters match ASCII ones ("ı" matches "i"), so a
        # missing piece of ASCII text proves nothing here: every pattern runs.
        for pattern, repl, _ in _REWRITES:
            text = pattern.sub(repl, text)
        return text
    low = text.lower()
    for pattern, repl, needle in _REWRITES:
        if needle in low:  # most questions hold none of them: a few scans instead of 23 regexes
            text = pattern.sub(repl, text)
            low = text.lower()
    return text


def _tokenise(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    append = tokens.append
    prev_last = ""  # the last character of the previous match ("" before the first)
    # One findall over (gap before the token, then its kind's group): the tuples are made
    # in C, where a match object's lastgroup/group/start/end were four calls a token.
    for gap, code, cur, num, word, op in _GAPPED_TOKEN_RE.findall(text):
        # A token starts a sentence when the last character before it that is not a space
        # ends one (or there is none).
        before = gap.rstrip(" ") or prev_last
        initial = not before or before[-1] in _SENTENCE_ENDS
        sep = "," in gap or "/" in gap or "&" in gap
        if word:
            raw, kind = word, "word"
            prev_last = raw[-1]
            if "-" in raw and not any(ch.isdigit() for ch in raw):
                # "state-of-the-art" is the same words as "state of the art".
                if raw.lower() not in _PROGRAMMING_LANGUAGES:
                    for part in raw.split("-"):
                        if part:
                            append(_Token(part, part.lower(), "word", initial, sep))
                            initial = sep = False
                    continue
        elif num:
            raw, kind = num, "num"
        elif code:
            raw, kind = code, "code"
        elif cur:
            raw, kind = cur, "cur"
        else:
            raw, kind = op, "op"
        prev_last = raw[-1]
        append(_Token(raw, raw.lower(), kind, initial, sep))
    return tokens
