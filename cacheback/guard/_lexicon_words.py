"""Function words the guard reads: stopwords, negation cues, opposite pairs, the
question and order words whose position carries meaning, and the cues of a passive verb."""

from __future__ import annotations

_STOPWORDS = frozenset(
    """
    a an the and or but if so of to in on at by for with about as into onto from up out
    over under again further then once here there when where why how what which who whom
    whose this that these those am is are was were be been being have has had having do
    does did doing will would shall should can could may might must i me my mine myself we
    us our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves some any each every all both
    few many much such own same just very too also only than s t really actually exactly
    please kindly hey hi hello thanks thank tell know let give show explain describe
    someone somebody anyone anybody one ones thing things way ways get got getting go
    possible best good better simply basically generally usually ever even still
    whats hows whos wheres whens whys
    """.split()
)

# Words that negate a question. "n't" is expanded to "not" before matching.
_NEGATIONS = frozenset(
    "not no never without none nothing nobody nowhere neither nor cannot unable unaware "
    "avoid prevent absence absent lack lacking non omit omitting except excluding".split()
)

# Opposite pairs: a question about one is not a question about the other.
_OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = (
    ("best", "worst"), ("good", "bad"), ("most", "least"), ("more", "less"),
    ("more", "fewer"), ("maximum", "minimum"), ("max", "min"), ("largest", "smallest"),
    ("biggest", "smallest"), ("big", "small"), ("large", "small"), ("higher", "lower"),
    ("high", "low"), ("highest", "lowest"), ("increase", "decrease"), ("increase", "reduce"),
    ("rise", "fall"), ("buy", "sell"), ("buying", "selling"), ("pros", "cons"),
    ("advantage", "disadvantage"), ("advantages", "disadvantages"), ("like", "hate"),
    ("love", "hate"), ("like", "dislike"), ("men", "women"), ("man", "woman"),
    ("male", "female"), ("boy", "girl"), ("boys", "girls"), ("guys", "girls"),
    ("husband", "wife"), ("boyfriend", "girlfriend"), ("father", "mother"), ("son", "daughter"),
    ("brother", "sister"), ("cheap", "expensive"), ("cheapest", "most expensive"),
    ("fast", "slow"), ("faster", "slower"), ("fastest", "slowest"), ("hot", "cold"),
    ("warm", "cold"), ("young", "old"), ("older", "younger"), ("oldest", "youngest"),
    ("new", "old"), ("early", "late"), ("earliest", "latest"), ("easy", "hard"),
    ("easy", "difficult"), ("easiest", "hardest"), ("strong", "weak"), ("rich", "poor"),
    ("happy", "sad"), ("win", "lose"), ("winner", "loser"), ("pass", "fail"),
    ("open", "close"), ("start", "stop"), ("enable", "disable"), ("add", "remove"),
    ("import", "export"), ("upload", "download"), ("input", "output"), ("encrypt", "decrypt"),
    ("encode", "decode"), ("compress", "decompress"), ("serialize", "deserialize"),
    ("push", "pull"), ("true", "false"), ("positive", "negative"), ("left", "right"),
    ("north", "south"), ("east", "west"), ("top", "bottom"), ("inside", "outside"),
    ("above", "below"), ("internal", "external"), ("legal", "illegal"),
    ("possible", "impossible"), ("safe", "dangerous"), ("safe", "unsafe"),
    ("healthy", "unhealthy"), ("introvert", "extrovert"), ("introverted", "extroverted"),
    ("summer", "winter"), ("public", "private"), ("sunrise", "sunset"), ("ascending",
    "descending"), ("asc", "desc"), ("lowercase", "uppercase"), ("min", "max"),
    ("synchronous", "asynchronous"), ("sync", "async"), ("horizontal", "vertical"),
    ("horizontally", "vertically"), ("row", "column"), ("rows", "columns"),
    ("first", "last"), ("before", "after"), ("success", "failure"), ("accept", "reject"),
    ("allow", "deny"), ("allow", "block"), ("include", "exclude"), ("lock", "unlock"),
    ("install", "uninstall"), ("mount", "unmount"), ("login", "logout"),
    ("increment", "decrement"), ("debit", "credit"), ("profit", "loss"), ("gain", "loss"),
    ("gain", "lose"), ("inbound", "outbound"), ("offline", "online"), ("give", "receive"),
    ("given", "received"), ("gave", "received"), ("send", "receive"), ("sent", "received"),
    ("lend", "borrow"), ("similar", "different"), ("similar", "differ"),
    ("similarities", "differences"), ("same", "different"), ("parent", "child"),
    ("teacher", "student"), ("employer", "employee"), ("buyer", "seller"),
    ("light", "dark"), ("white", "black"), ("weekday", "weekend"), ("odd", "even"),
)

_OPPOSITE_WORDS_SET: frozenset[str] = frozenset(w for pair in _OPPOSITE_PAIRS for w in pair)
_OPPOSITE_OF: dict[str, frozenset[str]] = {}
for _a, _b in _OPPOSITE_PAIRS:
    _OPPOSITE_OF[_a] = _OPPOSITE_OF.get(_a, frozenset()) | {_b}
    _OPPOSITE_OF[_b] = _OPPOSITE_OF.get(_b, frozenset()) | {_a}

# Markers around which the order of the two sides carries meaning.
_DIRECTION_MARKERS = frozenset({"to", "into", "than", "from", "->", "→", "=>", "per",
                                "before", "after", "onto", "towards", "toward", "over",
                                "against"})
# Words (and commas) across which order means nothing; marked in _Features.order.
_SYMMETRIC = frozenset({"and", "or", "vs", "versus", "between", "nor", "either", "both"})
_SYMMETRIC_MARK = "|"

# Opening question words that ask for a different kind of answer (a reason, a time) than
# the same sentence without them, and the words that ask the same thing ("the reason").
# "Where"/"who" are left out: "where can I find" is "which are", "who is" often "what is".
_WH_WORDS: dict[str, frozenset[str]] = {
    "why": frozenset({"reason", "reasons", "cause", "causes", "purpose", "makes", "make"}),
    "when": frozenset({"time", "date", "year", "day", "timeline"}),
}
_WH_LEADS = frozenset({"so", "but", "and", "then", "ok", "okay", "also"})
_AUXILIARIES = frozenset(
    "is are was were do does did will would can could should shall may might must has have "
    "had am not".split()
)

_BE = frozenset("is are was were be been being get gets got gotten".split())
_IRREGULAR_PARTICIPLES = frozenset(
    """
    made done known given taken written built sent found held kept left lost paid put read
    run said seen set shown sold told thought understood bought brought caught taught won
    chosen spoken stolen broken driven eaten fallen forgotten hidden ridden risen shaken
    grown thrown drawn worn torn born beaten bitten cut hit hurt let shut split spread
    """.split()
)


def _participle(word: str) -> bool:
    return word.endswith(("ed", "en")) or word in _IRREGULAR_PARTICIPLES
