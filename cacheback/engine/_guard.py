"""The hit guard and the calibrated verbatim decision.

A plain cosine threshold serves near-misses as hits: "USD to EUR" and "EUR to USD",
"Python 3.11" and "3.12", today and tomorrow, a negated question, another city in
the same sentence. Sentence embeddings barely move for such edits, so the guard
compares what the two texts *pin down* (numbers, dates, units, currencies,
negation, direction, names, code identifiers, the language or format asked for)
and vetoes a hit when those differ. Everything here is pure and cheap: per-text
extraction is cached, a comparison is a few set operations.

The decision then rescales the similarity with a small logistic model over
lexical features (trained by ``scripts/train_guard.py``) so that the user's
threshold keeps its meaning on the cosine scale.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

__all__ = [
    "FEATURE_NAMES",
    "Decision",
    "GuardModel",
    "filter_synthesis_candidates",
    "guard_reasons",
    "pair_features",
    "shipped_model",
    "verbatim_decision",
    "word_overlap",
]

T = TypeVar("T")

# --------------------------------------------------------------------------- lexicons

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

_MONTHS = {
    "january": "jan", "february": "feb", "march": "mar", "april": "apr", "may": "may",
    "june": "jun", "july": "jul", "august": "aug", "september": "sep", "october": "oct",
    "november": "nov", "december": "dec", "jan": "jan", "feb": "feb", "mar": "mar",
    "apr": "apr", "jun": "jun", "jul": "jul", "aug": "aug", "sep": "sep", "sept": "sep",
    "oct": "oct", "nov": "nov", "dec": "dec",
}
# Month names that are also ordinary words count only when capitalised or next to a number.
_AMBIGUOUS_MONTHS = frozenset({"march", "may", "august", "jan", "mar", "apr", "jun", "jul",
                               "aug", "sep", "oct", "nov", "dec"})
_WEEKDAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun", "mondays": "mon",
    "tuesdays": "tue", "wednesdays": "wed", "thursdays": "thu", "fridays": "fri",
    "saturdays": "sat", "sundays": "sun",
}
_RELATIVE_DAYS = {
    "today": "today", "tonight": "tonight", "tomorrow": "tomorrow", "yesterday": "yesterday",
    "tmrw": "tomorrow", "tmr": "tomorrow", "weekend": "weekend",
}
_PERIODS = frozenset({"week", "month", "year", "weekend", "quarter", "decade", "century",
                      "night", "morning", "summer", "winter", "season", "semester"})
_PERIOD_QUALIFIERS = {"next": "next", "last": "last", "this": "this", "previous": "last",
                      "coming": "next", "past": "last", "upcoming": "next"}

# Canonical units. Single letters and other ambiguous spellings only count after a number.
_UNITS = {
    "km": "km", "kms": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km",
    "kilometres": "km", "mile": "mile", "miles": "mile", "mi": "mile", "meter": "m",
    "meters": "m", "metre": "m", "metres": "m", "cm": "cm", "centimeter": "cm",
    "centimeters": "cm", "centimetre": "cm", "centimetres": "cm", "mm": "mm",
    "millimeter": "mm", "millimeters": "mm", "foot": "ft", "feet": "ft", "ft": "ft",
    "inch": "inch", "inches": "inch", "yard": "yard", "yards": "yard", "yd": "yard",
    "kg": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "gram": "g", "grams": "g", "gramme": "g", "mg": "mg", "milligram": "mg",
    "milligrams": "mg", "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "ounce": "oz",
    "ounces": "oz", "oz": "oz", "ton": "ton", "tons": "ton", "tonne": "ton", "tonnes": "ton",
    "stone": "stone", "liter": "l", "liters": "l", "litre": "l", "litres": "l", "ml": "ml",
    "milliliter": "ml", "milliliters": "ml", "millilitre": "ml", "gallon": "gal",
    "gallons": "gal", "gal": "gal", "pint": "pint", "pints": "pint", "quart": "quart",
    "quarts": "quart", "cup": "cup", "cups": "cup", "tablespoon": "tbsp",
    "tablespoons": "tbsp", "tbsp": "tbsp", "teaspoon": "tsp", "teaspoons": "tsp",
    "tsp": "tsp", "celsius": "degc", "centigrade": "degc", "°c": "degc",
    "fahrenheit": "degf", "°f": "degf", "kelvin": "kelvin", "mph": "mph", "kph": "kmh",
    "km/h": "kmh", "kmh": "kmh", "knot": "knot", "knots": "knot", "acre": "acre",
    "acres": "acre", "hectare": "hectare", "hectares": "hectare", "sqft": "sqft",
    "byte": "byte", "bytes": "byte", "kb": "kb", "kilobyte": "kb", "kilobytes": "kb",
    "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gb": "gb", "gigabyte": "gb",
    "gigabytes": "gb", "tb": "tb", "terabyte": "tb", "terabytes": "tb", "kib": "kib",
    "mib": "mib", "gib": "gib", "bit": "bit", "bits": "bit", "mbps": "mbps", "gbps": "gbps",
    "ghz": "ghz", "mhz": "mhz", "hz": "hz", "watt": "w", "watts": "w", "kw": "kw",
    "kwh": "kwh", "volt": "v", "volts": "v", "amp": "a", "amps": "a", "calorie": "kcal",
    "calories": "kcal", "kcal": "kcal", "joule": "j", "joules": "j", "psi": "psi",
    "second": "sec", "seconds": "sec", "sec": "sec", "secs": "sec", "minute": "min",
    "minutes": "min", "mins": "min", "hour": "hour", "hours": "hour", "hr": "hour",
    "hrs": "hour", "day": "day", "days": "day", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year", "yr": "year",
    "yrs": "year", "ms": "ms", "millisecond": "ms", "milliseconds": "ms", "percent": "pct",
    "%": "pct", "degree": "deg", "degrees": "deg", "radian": "rad", "radians": "rad",
}
_UNIT_AFTER_NUMBER_ONLY = frozenset({
    "m", "g", "l", "c", "f", "k", "s", "h", "min", "sec", "ms", "mi", "gal", "oz", "yd",
    "ton", "tons", "stone", "cup", "cups", "second", "day", "days", "week", "weeks",
    "month", "months", "year", "years", "hour", "hours", "minute", "minutes", "pound",
    "pounds", "degree", "degrees", "bit", "bits", "hr", "yr", "v", "a", "w",
})
_SINGLE_LETTER_UNITS = {"m": "m", "g": "g", "l": "l", "c": "degc", "f": "degf", "s": "sec",
                        "h": "hour"}
# Durations are units too, but a question without one ("how long") is the same question
# with one ("how many days"): only a substitution of them is a difference.
_DURATIONS = frozenset({"sec", "min", "hour", "day", "week", "month", "year", "ms"})

_CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "₹": "inr", "₩": "krw",
                     "₽": "rub", "₿": "btc"}
_CURRENCIES = {
    "usd": "usd", "dollar": "usd", "dollars": "usd", "eur": "eur", "euro": "eur",
    "euros": "eur", "gbp": "gbp", "sterling": "gbp", "jpy": "jpy", "yen": "jpy",
    "inr": "inr", "rupee": "inr", "rupees": "inr", "rs": "inr", "cny": "cny", "rmb": "cny",
    "yuan": "cny", "renminbi": "cny", "cad": "cad", "aud": "aud", "chf": "chf",
    "franc": "chf", "francs": "chf", "btc": "btc", "bitcoin": "btc", "bitcoins": "btc",
    "eth": "eth", "ether": "eth", "ethereum": "eth", "krw": "krw", "won": "krw",
    "rub": "rub", "ruble": "rub", "rubles": "rub", "rouble": "rub", "roubles": "rub",
    "mxn": "mxn", "peso": "mxn", "pesos": "mxn", "brl": "brl", "real": "brl", "reais": "brl",
    "sek": "sek", "nok": "nok", "dkk": "dkk", "krona": "sek", "krone": "nok", "pln": "pln",
    "zloty": "pln", "try": "try", "lira": "try", "zar": "zar", "rand": "zar", "sgd": "sgd",
    "hkd": "hkd", "nzd": "nzd", "aed": "aed", "dirham": "aed", "dirhams": "aed",
    "usdt": "usdt", "usdc": "usdc", "doge": "doge", "dogecoin": "doge", "sol": "sol",
}
# Currency words that are ordinary words in most sentences: only after a number or with a
# currency context word.
_AMBIGUOUS_CURRENCIES = frozenset({"real", "won", "try", "sol", "rand", "rs", "ether",
                                   "franc", "francs"})
# "Canadian dollar" is not "US dollar"; "pound" is money only with a money word nearby.
_CURRENCY_QUALIFIERS = {"canadian": "cad", "australian": "aud", "singapore": "sgd",
                        "hong": "hkd", "new": "nzd", "zealand": "nzd", "us": "usd",
                        "american": "usd", "british": "gbp", "mexican": "mxn",
                        "swiss": "chf", "indian": "inr", "japanese": "jpy",
                        "chinese": "cny", "brazilian": "brl", "turkish": "try",
                        "russian": "rub", "korean": "krw"}

_NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1e6", "billion": "1e9",
    "trillion": "1e12", "twenties": "20s", "thirties": "30s", "forties": "40s",
    "fifties": "50s", "sixties": "60s", "seventies": "70s", "eighties": "80s",
    "nineties": "90s", "half": "0.5", "quarter": "0.25", "dozen": "12", "twice": "x2",
    "double": "x2", "triple": "x3", "once": "x1", "thrice": "x3", "single": "1",
}
_ORDINAL_WORDS = {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
    "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10", "eleventh": "11",
    "twelfth": "12", "twentieth": "20", "hundredth": "100",
}

_NATURAL_LANGUAGES = frozenset(
    """
    english french spanish german italian portuguese russian chinese mandarin cantonese
    japanese korean arabic hindi bengali urdu turkish dutch swedish norwegian danish
    finnish polish greek hebrew persian farsi thai vietnamese indonesian malay tagalog
    tamil telugu marathi punjabi gujarati kannada malayalam ukrainian czech romanian
    hungarian latin swahili catalan croatian serbian bulgarian slovak irish welsh
    """.split()
)
# Programming languages; the ambiguous ones (go, c, r, swift, rust ...) need a capital.
_PROGRAMMING_LANGUAGES = {
    "python": "python", "python3": "python", "java": "java", "javascript": "javascript",
    "js": "javascript", "typescript": "typescript", "ts": "typescript", "c++": "cpp",
    "cpp": "cpp", "c#": "csharp", "csharp": "csharp", "f#": "fsharp", "golang": "go",
    "kotlin": "kotlin", "scala": "scala", "php": "php", "perl": "perl", "haskell": "haskell",
    "matlab": "matlab", "lua": "lua", "sql": "sql", "mysql": "mysql", "postgresql": "postgres",
    "postgres": "postgres", "sqlite": "sqlite", "bash": "bash", "zsh": "zsh",
    "powershell": "powershell", "fortran": "fortran", "cobol": "cobol", "erlang": "erlang",
    "clojure": "clojure", "ocaml": "ocaml", "objective-c": "objc", "vba": "vba",
    "solidity": "solidity", "groovy": "groovy", "wasm": "wasm",
    "webassembly": "wasm", "nodejs": "node", "node": "node", "node.js": "node",
}
_CAPITALISED_LANGUAGES = {"go": "go", "c": "c", "r": "r", "swift": "swift", "rust": "rust",
                          "ruby": "ruby", "julia": "julia", "dart": "dart",
                          "elixir": "elixir", "scheme": "scheme", "crystal": "crystal",
                          "zig": "zig", "nim": "nim", "shell": "shell", "d": "d",
                          "assembly": "assembly"}

# File and data formats: asking for one is asking for a different answer.
_FORMATS = {
    "json": "json", "yaml": "yaml", "yml": "yaml", "xml": "xml", "csv": "csv", "tsv": "tsv",
    "markdown": "markdown", "latex": "latex", "toml": "toml", "pdf": "pdf", "docx": "docx",
    "xlsx": "xlsx", "parquet": "parquet", "protobuf": "protobuf", "svg": "svg", "png": "png",
    "jpg": "jpg", "jpeg": "jpg", "gif": "gif", "mp3": "mp3", "mp4": "mp4", "wav": "wav",
    "html": "html", "mermaid": "mermaid", "uml": "uml",
}
# Shapes of an answer that are also ordinary topics ("recover a deleted email"): they count
# only when asked for ("as a table", "write a haiku").
_SHAPES = {
    "table": "table", "tables": "table", "tabular": "table", "bullet": "bullets",
    "bullets": "bullets", "bulleted": "bullets", "haiku": "haiku", "haikus": "haiku",
    "poem": "poem", "poems": "poem", "limerick": "limerick", "sonnet": "sonnet",
    "essay": "essay", "essays": "essay", "tweet": "tweet", "email": "email",
    "emails": "email", "story": "story", "stories": "story", "song": "song",
    "songs": "song", "script": "script", "diagram": "diagram", "flowchart": "flowchart",
    "word": "word", "excel": "excel", "regex": "regex", "paragraph": "paragraph",
    "sentence": "sentence", "letter": "letter", "speech": "speech",
    "slide": "slides", "slides": "slides", "summary": "summary", "outline": "outline",
}
# "as a table", "in JSON", "into a bulleted list", "write a haiku", "draft me an email".
_SHAPE_LEADS = frozenset({"as", "in"})
_SHAPE_FILLERS = frozenset({"a", "an", "me", "us", "short", "brief", "long", "numbered",
                            "bulleted", "simple", "one", "single", "quick", "formal",
                            "markdown", "nice", "funny"})
# Verbs that ask for a piece of writing ("write a haiku", "give me a table"); "create a
# table" in SQL or "make a list of URLs" are topics, not requests for a shape.
_GENERATIVE_VERBS = frozenset(
    """
    write draft compose give rewrite reformat format output return print show present
    answer reply respond summarize summarise translate
    """.split()
)
_STYLES = {
    "brief": "brief", "briefly": "brief", "short": "brief", "shortly": "brief",
    "concise": "brief", "concisely": "brief", "summary": "brief", "summarize": "brief",
    "summarise": "brief", "tldr": "brief", "detailed": "detailed", "detail": "detailed",
    "depth": "detailed", "thorough": "detailed", "thoroughly": "detailed",
    "comprehensive": "detailed", "elaborate": "detailed", "formal": "formal",
    "formally": "formal", "informal": "informal", "casual": "informal",
    "casually": "informal", "funny": "funny", "humorous": "funny", "serious": "serious",
    "simple": "simple", "eli5": "simple", "beginner": "simple", "beginners": "simple",
    "advanced": "advanced", "expert": "advanced", "experts": "advanced",
}
_OPPOSITE_STYLES = frozenset({("brief", "detailed"), ("formal", "informal"),
                              ("funny", "serious"), ("simple", "advanced")})

# Places and products that users often type in lower case; capitalised names are found by
# shape, these by name.
_GAZETTEER = frozenset(
    """
    afghanistan albania algeria argentina armenia australia austria azerbaijan bangladesh
    belarus belgium bolivia brazil bulgaria cambodia cameroon canada chile china colombia
    croatia cuba cyprus denmark ecuador egypt england estonia ethiopia finland france
    georgia germany ghana greece hungary iceland india indonesia iran iraq ireland israel
    italy jamaica japan jordan kazakhstan kenya korea kuwait laos latvia lebanon libya
    lithuania luxembourg malaysia mexico mongolia morocco nepal netherlands nigeria norway
    pakistan peru philippines poland portugal qatar romania russia scotland serbia
    singapore slovakia slovenia somalia spain sudan sweden switzerland syria taiwan
    tanzania thailand tunisia turkey uganda ukraine uruguay usa uk uae venezuela vietnam
    wales yemen zimbabwe america europe asia africa antarctica oceania
    paris london berlin madrid rome tokyo beijing shanghai delhi mumbai bangalore
    bengaluru chennai kolkata hyderabad pune moscow sydney melbourne toronto vancouver
    montreal chicago boston seattle houston dallas austin denver miami atlanta
    philadelphia phoenix amsterdam brussels vienna prague warsaw budapest lisbon dublin
    stockholm oslo copenhagen helsinki athens istanbul cairo dubai nairobi lagos seoul
    bangkok jakarta manila hanoi singapore karachi lahore dhaka kathmandu tehran baghdad
    riyadh jerusalem barcelona milan munich hamburg frankfurt zurich geneva lyon
    california texas florida ohio michigan virginia washington oregon nevada arizona
    colorado utah georgia alabama alaska hawaii kentucky louisiana maine maryland
    massachusetts minnesota mississippi missouri montana nebraska oklahoma pennsylvania
    tennessee wisconsin iowa kansas idaho wyoming connecticut delaware vermont
    windows linux ubuntu debian fedora centos macos mac ios android iphone ipad chrome
    firefox safari edge aws azure gcp docker kubernetes react vue angular svelte django
    flask fastapi rails laravel spring numpy pandas pytorch tensorflow keras sklearn
    excel word powerpoint photoshop gmail outlook slack zoom teams github gitlab
    bitbucket jenkins terraform ansible nginx apache redis mongodb kafka spark hadoop
    postgres mysql sqlite oracle firebase supabase heroku vercel netlify wordpress
    shopify stripe paypal amazon google microsoft apple meta facebook instagram twitter
    tiktok youtube netflix spotify uber airbnb tesla openai anthropic nvidia intel amd
    samsung huawei xiaomi sony nintendo xbox playstation
    """.split()
)

# Names in the gazetteer that are also everyday words ("cutting-edge", "a word", "spring
# water"): a name only when capitalised.
_COMMON_WORD_NAMES = frozenset(
    """
    edge word excel teams zoom slack spring chrome safari apple amazon oracle meta spark
    windows turkey jordan react angular rails flask phoenix mac outlook georgia chile
    """.split()
)

# Acronyms of common nouns: written in capitals, but no name ("the URL of the file").
_COMMON_ACRONYMS = frozenset(
    "url urls uri api apis cpu gpu ram pc faq ui cli sdk ide usb tv diy".split()
)

_ALIASES = {
    "us": "usa", "u.s.": "usa", "u.s": "usa", "united states": "usa", "america": "usa",
    "uk": "britain", "u.k.": "britain", "united kingdom": "britain", "great britain":
    "britain", "nyc": "new york", "sf": "san francisco", "la": "los angeles",
    "js": "javascript", "ts": "typescript", "k8s": "kubernetes", "tf": "tensorflow",
    "postgresql": "postgres", "golang": "go", "py": "python", "mac": "macos", "osx": "macos",
    "bengaluru": "bangalore", "bombay": "mumbai", "madras": "chennai", "calcutta": "kolkata",
    "peking": "beijing",
}

# A country and the adjective or language named after it are the same subject.
_DEMONYMS = {
    "chinese": "china", "french": "france", "spanish": "spain", "german": "germany",
    "japanese": "japan", "indian": "india", "american": "usa", "americans": "usa",
    "british": "britain", "english": "england", "italian": "italy", "russian": "russia",
    "korean": "korea", "canadian": "canada", "mexican": "mexico", "brazilian": "brazil",
    "turkish": "turkey", "greek": "greece", "dutch": "netherlands", "swedish": "sweden",
    "polish": "poland", "portuguese": "portugal", "irish": "ireland", "thai": "thailand",
    "vietnamese": "vietnam", "indonesian": "indonesia", "australian": "australia",
    "pakistani": "pakistan", "egyptian": "egypt", "israeli": "israel", "iranian": "iran",
    "ukrainian": "ukraine", "european": "europe", "african": "africa", "asian": "asia",
    "norwegian": "norway", "danish": "denmark", "finnish": "finland", "swiss": "switzerland",
    "austrian": "austria", "belgian": "belgium", "argentinian": "argentina",
    "chilean": "chile", "peruvian": "peru", "colombian": "colombia", "nigerian": "nigeria",
    "kenyan": "kenya", "filipino": "philippines", "malaysian": "malaysia",
    "singaporean": "singapore", "bangladeshi": "bangladesh", "nepali": "nepal",
    "scottish": "scotland", "welsh": "wales", "hungarian": "hungary", "czech": "czechia",
    "romanian": "romania", "persian": "iran", "arabic": "arabia", "hebrew": "israel",
}

# --------------------------------------------------------------------------- tokenising

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
_CAMEL_RE = re.compile(r"[a-z][A-Z]")
_THOUSANDS_RE = re.compile(r"^\d{1,3}(?:,\d{3})+$")
_NUM_SPLIT_RE = re.compile(r"^(\d+(?:[.,:]\d+)*)(.*)$")
_TIME_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)$")
_CLOCK_RE = re.compile(r"^\d{1,2}:\d{2}$")
_NUM_WORD_RE = re.compile(r"^(\d+)-([a-z]+)$")
_VERSION_WORD_RE = re.compile(r"^v(\d+(?:\.\d+)*)$")
_LEAD_ALPHA_RE = re.compile(r"^[a-z+#]+")
_IDENT_PART_RE = re.compile(r"[A-Za-z0-9]+")
_SENTENCE_ENDS = frozenset('.?!:;"([\n')
_PUNCT = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "´": "'", "–": "-", "—": "-"})

_REWRITES = (
    # Idioms whose negation asks nothing: "Should X be banned or not?", "why or why not".
    (re.compile(r",?\s*\b(?:why\s+)?or\s+(?:why\s+)?not\b", re.I), ""),
    (re.compile(r"\bno\.\s*(?=\d)", re.I), "number "),
    (re.compile(r"\bnot\s+only\b", re.I), ""),
    (re.compile(r"\bno\s+longer\b", re.I), "not"),
    (re.compile(r"^\s*(?:yes|no)\s*,\s*", re.I), ""),  # an answer's "No, ..." is not negation
    (re.compile(r"\bdo(?:n't|\s+not)\s+forget\b", re.I), "remember"),
    (re.compile(r"\bunited\s+states(?:\s+of\s+america)?\b", re.I), "USA"),
    (re.compile(r"\bunited\s+kingdom\b", re.I), "UK"),
    (re.compile(r"\bnew\s+york\s+city\b", re.I), "NYC"),
    (re.compile(r"\b(can)'t\b", re.I), r"\1 not"),
    (re.compile(r"\bwon't\b", re.I), "will not"),
    (re.compile(r"\bshan't\b", re.I), "shall not"),
    (re.compile(r"n't\b", re.I), " not"),
    (re.compile(r"\b(?:dont|doesnt|didnt|isnt|arent|wasnt|werent|cant|wont|shouldnt|"
                r"wouldnt|couldnt|havent|hasnt)\b", re.I), " not"),
    (re.compile(r"\b(let)'s\b", re.I), r"\1 us"),
    (re.compile(r"\b(it|that|what|where|who|how|when|why|there|here|he|she)'s\b", re.I),
     r"\1 is"),
    (re.compile(r"'re\b", re.I), " are"),
    (re.compile(r"'ve\b", re.I), " have"),
    (re.compile(r"'ll\b", re.I), " will"),
    (re.compile(r"\b(i)'m\b", re.I), r"\1 am"),
    (re.compile(r"'d\b", re.I), " would"),
    (re.compile(r"'s\b"), ""),  # possessive
    (re.compile(r"(?<=s)'(?=\s|$)"), ""),
)

# Markers around which the order of the two sides carries meaning.
_DIRECTION_MARKERS = frozenset({"to", "into", "than", "from", "->", "→", "=>", "per",
                                "before", "after", "onto", "towards", "toward", "over",
                                "against"})
_DIRECTION_WINDOW = 4
# Words (and commas) across which order means nothing; marked in _Features.order.
_SYMMETRIC = frozenset({"and", "or", "vs", "versus", "between", "nor", "either", "both"})
_SYMMETRIC_MARK = "|"
# Content-word Jaccard above which two texts count as "the same words" (see _guard).
_CLOSE_JACCARD = 0.5
_CONVERSION_LINKS = frozenset({"to", "into", "in", "->", "→", "=>", "as", "=", "for"})
# After these a unit or currency is the one asked for ("in euros", "how many km").
_TARGET_LEADS = frozenset({"to", "into", "in", "many", "much", "->", "→", "=>"})
_ONE = frozenset({"1", "one", "a", "an", "per", "each", "every"})
_MAGNITUDES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9,
               "trillion": 1e12, "k": 1e3, "m": 1e6, "bn": 1e9, "b": 1e9}
# Relative dates that move away from "now": one-sided, they still change the question.
_MARKED_DATES = frozenset({"tomorrow", "yesterday", "tonight"})
_SHORT_UNIT_MAX = 3

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

# Negation scope: the cue applies to the first content word within this many words.
_NEG_SCOPE = 4
_MAX_RUN = 6  # longer capitalised runs are title case, not a name
_UNSCOPED = "*"
_PASSIVE_REACH = 3  # words between "is" and its participle ("is the deadline mentioned")
_BE = frozenset("is are was were be been being get gets got gotten".split())
_IRREGULAR_PARTICIPLES = frozenset(
    """
    made done known given taken written built sent found held kept left lost paid put read
    run said seen set shown sold told thought understood bought brought caught taught won
    chosen spoken stolen broken driven eaten fallen forgotten hidden ridden risen shaken
    grown thrown drawn worn torn born beaten bitten cut hit hurt let shut split spread
    """.split()
)

_F_STOP, _F_NEG, _F_SPECIAL = 1, 2, 4


def _participle(word: str) -> bool:
    return word.endswith(("ed", "en")) or word in _IRREGULAR_PARTICIPLES


def _lexicon_flags() -> dict[str, int]:
    special: set[str] = set()
    for table in (_OPPOSITE_WORDS_SET, _MONTHS, _WEEKDAYS, _RELATIVE_DAYS, _PERIOD_QUALIFIERS,
                  _UNITS, _CURRENCIES, _CURRENCY_QUALIFIERS, _NUMBER_WORDS, _ORDINAL_WORDS,
                  _NATURAL_LANGUAGES, _PROGRAMMING_LANGUAGES, _CAPITALISED_LANGUAGES,
                  _FORMATS, _SHAPES, _STYLES, _GAZETTEER, _ALIASES, _DEMONYMS,
                  _MAGNITUDES, _SINGLE_LETTER_UNITS):
        special.update(table)
    special.update({"morning", "afternoon", "evening", "night", "noon", "midnight", "am",
                    "pm", "v", "version"})
    flags: dict[str, int] = {}
    for w in _STOPWORDS:
        flags[w] = flags.get(w, 0) | _F_STOP
    for w in _NEGATIONS:
        flags[w] = flags.get(w, 0) | _F_NEG
    for w in special:
        flags[w] = flags.get(w, 0) | _F_SPECIAL
    return flags


_OPPOSITE_WORDS_SET: frozenset[str] = frozenset(w for pair in _OPPOSITE_PAIRS for w in pair)
_OPPOSITE_OF: dict[str, frozenset[str]] = {}
for _a, _b in _OPPOSITE_PAIRS:
    _OPPOSITE_OF[_a] = _OPPOSITE_OF.get(_a, frozenset()) | {_b}
    _OPPOSITE_OF[_b] = _OPPOSITE_OF.get(_b, frozenset()) | {_a}
_FLAGS = _lexicon_flags()


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


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # as written (case kept)
    low: str
    kind: str  # "word", "num", "code", "cur", "op"
    initial: bool  # first token of a sentence: its capital says nothing
    sep: bool = False  # a comma, slash or ampersand right before it


@dataclass(frozen=True, slots=True)
class _Features:
    """What one text pins down. Built once per text (cached)."""

    words: tuple[str, ...]  # lower-case word tokens, in order
    word_set: frozenset[str]
    order: tuple[str, ...]  # content words, code, direction words and "|" (and/or/comma)
    initials: str  # first letters of the content words, in order ("machine learning": "ml")
    stems: frozenset[str]
    content: frozenset[str]  # content stems (stopwords dropped)
    numbers: frozenset[str]
    spelled: frozenset[str]
    versions: frozenset[str]
    ordinals: frozenset[str]
    dates: frozenset[str]
    times: frozenset[str]
    units: frozenset[str]
    unit_targets: frozenset[str]
    currencies: frozenset[str]
    currency_targets: frozenset[str]
    conversions: frozenset[tuple[str, str]]  # (from, to) of units or currencies
    routes: frozenset[tuple[str, str]]  # "from A to B"
    negated: bool
    # What each negation applies to: the first content word after the cue ("without
    # food": "food"), or "*" when nothing follows it closely.
    neg_heads: frozenset[str]
    passive: frozenset[str]  # stems used as a passive participle ("is mentioned")
    # A capitalised run's words and the run's initials ("natural" -> "nlp").
    acronyms: frozenset[tuple[str, str]]
    asks: frozenset[str]  # sentence-initial why/when/where/who
    entities: frozenset[str]
    code: frozenset[str]
    languages: frozenset[str]
    formats: frozenset[str]
    mentions: frozenset[str]  # every format or shape named, asked for or not
    styles: frozenset[str]
    opposites: frozenset[str]


def _normalise(text: str) -> str:
    text = _strip_accents(unicodedata.normalize("NFKC", text)).translate(_PUNCT)
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)
    return text


def _tokenise(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    end = 0
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "word"
        raw = m.group()
        k = m.start() - 1
        while k >= 0 and text[k] == " ":
            k -= 1
        initial = k < 0 or text[k] in _SENTENCE_ENDS
        sep = any(ch in ",/&" for ch in text[end : m.start()])
        end = m.end()
        if kind == "word" and "-" in raw and not any(ch.isdigit() for ch in raw):
            # "state-of-the-art" is the same words as "state of the art".
            if raw.lower() not in _PROGRAMMING_LANGUAGES:
                for part in raw.split("-"):
                    if part:
                        tokens.append(_Token(part, part.lower(), "word", initial, sep))
                        initial = sep = False
                continue
        tokens.append(_Token(raw, raw.lower(), kind, initial, sep))
    return tokens


def _is_code_identifier(raw: str) -> bool:
    if raw.endswith("()") or "_" in raw.strip("_") or raw.startswith("__"):
        return True
    if "." in raw:
        parts = raw.split(".")
        # "e.g." and "U.S." are abbreviations, "node.js" a name.
        return any(len(p) > 1 for p in parts) and raw.lower() not in _PROGRAMMING_LANGUAGES
    # camelCase; PascalCase names ("GitHub") are treated as names instead.
    return raw[:1].islower() and bool(_CAMEL_RE.search(raw))


def _number_value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _canonical_number(raw: str) -> str:
    if _THOUSANDS_RE.match(raw):
        raw = raw.replace(",", "")
    if raw.isdigit():
        return str(int(raw))
    return raw


class _Builder:
    """Accumulates one text's features in a single pass over its tokens."""

    def __init__(self, toks: list[_Token]) -> None:
        self.toks = toks
        self.words: list[str] = []
        self.stems: set[str] = set()
        self.content: set[str] = set()
        self.numbers: set[str] = set()
        self.spelled: set[str] = set()  # "two", "a dozen": a count in prose, not a value
        self.last_number: tuple[int, str, bool] | None = None
        self.versions: set[str] = set()
        self.ordinals: set[str] = set()
        self.dates: set[str] = set()
        self.times: set[str] = set()
        self.units: set[str] = set()
        self.unit_targets: set[str] = set()
        self.currencies: set[str] = set()
        self.currency_targets: set[str] = set()
        self.slots: list[tuple[int, str]] = []
        self.entities: set[str] = set()
        self.code: set[str] = set()
        self.languages: set[str] = set()
        self.formats: set[str] = set()
        self.mentions: set[str] = set()
        self.styles: set[str] = set()
        self.opposites: set[str] = set()
        self.negated = False
        self.neg_heads: set[str] = set()
        self.neg_pending = 0  # words left in which to find the current negation's head
        self.passive: set[str] = set()
        self.acronyms: set[tuple[str, str]] = set()
        self.asks: set[str] = set()
        self.order: list[str] = []
        lows = {t.low for t in toks}
        self.money_context = bool(
            any(t.kind == "cur" for t in toks)
            or lows & {"money", "exchange", "currency", "sterling", "price", "cost", "gbp",
                       "usd", "eur", "dollar", "dollars", "euro", "euros", "salary", "pay"}
        )
        inner = [t for t in toks if t.kind == "word" and not t.initial and t.text[:1].isalpha()]
        capitalised = sum(1 for t in inner if t.text[:1].isupper())
        # "How To Learn Python Fast", "WHY IS IT SO": capitals carry no information then.
        self.title_case = len(inner) >= 3 and capitalised >= 0.6 * len(inner)
        self.shouting = len(inner) >= 3 and sum(t.text.isupper() for t in inner) >= 0.6 * len(
            inner
        )

    def _asked_shape(self, i: int) -> bool:
        """Whether the shape word at ``i`` is what the text asks for."""
        k = i - 1
        while k >= 0 and self.toks[k].low in _SHAPE_FILLERS:
            k -= 1
        if k < 0 or i - k > 3:
            return False
        lead = self.toks[k].low
        return lead in _SHAPE_LEADS or lead in _GENERATIVE_VERBS

    def _target(self, i: int) -> bool:
        for t in self.toks[max(0, i - 2) : i]:
            if t.low in _TARGET_LEADS:
                return True
        return False

    def add_unit(self, i: int, unit: str) -> None:
        self.units.add(unit)
        self.slots.append((i, unit))
        if self._target(i):
            self.unit_targets.add(unit)

    def add_currency(self, i: int, cur: str) -> None:
        self.currencies.add(cur)
        self.slots.append((i, cur))
        if self._target(i):
            self.currency_targets.add(cur)

    def add_number(self, i: int, value: str, nxt: _Token | None, spelled: bool = False) -> None:
        # "1 kg", "one month", "a dollar": the default quantity says nothing.
        if value == "1" and nxt is not None and (nxt.low in _UNITS or nxt.low in _CURRENCIES):
            return
        (self.spelled if spelled else self.numbers).add(value)
        self.last_number = (i, value, spelled)

    def scale_number(self, i: int, factor: float, one_before: bool) -> None:
        """"5 million", "a hundred", "30k": one value, as "5000000" would be written."""
        last = self.last_number
        if last is not None and last[0] == i - 1:
            base = _number_value(last[1])
            (self.spelled if last[2] else self.numbers).discard(last[1])
            spelled = last[2]
        elif one_before:
            base, spelled = 1.0, True
        else:
            return  # "thousands of files": no value
        if base is None:
            return
        value = base * factor
        text = str(int(value)) if value.is_integer() else repr(value)
        (self.spelled if spelled else self.numbers).add(text)
        self.last_number = (i, text, spelled)

    def number_token(self, i: int, tok: _Token) -> None:
        toks = self.toks
        prev = toks[i - 1] if i > 0 else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        low = tok.low
        time_m = _TIME_RE.match(low)
        if time_m:
            self.times.add(f"{int(time_m.group(1))}:{time_m.group(2) or '00'}{time_m.group(3)}")
            return
        m = _NUM_SPLIT_RE.match(low)
        if m is None:  # pragma: no cover - the token pattern guarantees a leading digit
            return
        num, suffix = m.group(1), m.group(2)
        if nxt is not None and nxt.low in ("am", "pm") and num.isdigit() and int(num) <= 12:
            self.times.add(f"{int(num)}:00{nxt.low}")  # "7 am" is "7am"
            return
        if _CLOCK_RE.match(num):
            suffix_ampm = nxt.low if nxt is not None and nxt.low in ("am", "pm") else ""
            self.times.add(f"{int(num.split(':')[0])}:{num.split(':')[1]}{suffix_ampm}")
            return
        if suffix in ("st", "nd", "rd", "th"):
            self.ordinals.add(str(int(num)) if num.isdigit() else num)
            return
        num = _canonical_number(num)
        after_name = prev is not None and prev.kind == "word" and (
            prev.low in _PROGRAMMING_LANGUAGES or prev.low in _GAZETTEER
            or prev.text[:1].isupper()
        )
        if num.count(".") >= 2 or (prev is not None and prev.low in ("v", "version")) or (
            "." in num and after_name  # "Python 3.11", "Django 4.2"
        ):
            self.versions.add(num)
        elif len(num) == 4 and num.isdigit() and 1900 <= int(num) <= 2100 and not suffix:
            self.dates.add(num)
        elif suffix in _MAGNITUDES and (suffix not in ("m", "b") or
                                        (prev is not None and prev.kind == "cur")):
            self.add_number(i, num, None)
            self.scale_number(i + 1, _MAGNITUDES[suffix], False)
        else:
            self.add_number(i, num, nxt)
        if not suffix or suffix in _MAGNITUDES:
            return
        if suffix in ("am", "pm"):
            self.times.add(f"{num}:00{suffix}")
        elif suffix in _UNITS:
            self.add_unit(i, _UNITS[suffix])
        elif suffix in _SINGLE_LETTER_UNITS:
            self.add_unit(i, _SINGLE_LETTER_UNITS[suffix])
        elif suffix in _CURRENCIES:
            self.add_currency(i, _CURRENCIES[suffix])
        elif suffix.startswith("°"):
            self.add_unit(i, "degc" if suffix.endswith("c") else "degf")
        elif suffix == "%":
            self.add_unit(i, "pct")
        else:
            # "8GB"-like glued units were handled; "1Z0-560", "h2" are model numbers.
            self.numbers.add(low)

    def alnum_word(self, i: int, tok: _Token) -> None:
        """A word with digits: "python3.11", "es6", "ipv4", "gpt-4", "v2", "4-year"."""
        low = tok.low
        m2 = _NUM_WORD_RE.match(low)
        if m2:
            self.numbers.add(str(int(m2.group(1))))
            unit = _UNITS.get(m2.group(2))
            if unit:
                self.add_unit(i, unit)
            self.plain_word(m2.group(2))
            return
        m3 = _VERSION_WORD_RE.match(low)
        if m3:
            self.versions.add(m3.group(1))
            return
        lead = _LEAD_ALPHA_RE.match(low)
        if lead and lead.group() in _PROGRAMMING_LANGUAGES:
            self.name(_PROGRAMMING_LANGUAGES[lead.group()], language=True)
            rest = low[lead.end() :].lstrip("-")
            if rest:
                self.versions.add(rest)
            return
        if lead and "-" in low and lead.group().rstrip("-") in _GAZETTEER:
            self.name(lead.group().rstrip("-"))
        self.numbers.add(low)

    def name(self, value: str, language: bool = False) -> None:
        """A name: a place, product or person, or a language."""
        (self.languages if language else self.entities).add(value)

    def plain_word(self, low: str) -> None:
        words = self.words
        if (_participle(low) and _BE.intersection(words[-_PASSIVE_REACH:])) or (
            low == "by" and words and _participle(words[-1])
        ):
            # "is mentioned", "was quickly sold", "is the deadline mentioned", "(did the
            # firm get) acquired by": only a verb passive in one text of the two counts,
            # so an adjective such as "talented" on both sides changes nothing.
            self.passive.add(_stem(words[-1] if low == "by" else low))
        words.append(low)
        stem = _stem(low)
        self.stems.add(stem)
        flags = _FLAGS.get(low, 0)
        if flags & _F_NEG:
            self.negate()
            return
        if self.neg_pending:
            self.neg_pending -= 1
            if not flags & _F_STOP:
                self.neg_heads.add(stem)
                self.neg_pending = 0
            elif not self.neg_pending:
                self.neg_heads.add(_UNSCOPED)
        if low in _SYMMETRIC:
            self.order.append(_SYMMETRIC_MARK)
        elif not flags & _F_STOP:
            self.content.add(stem)
            self.order.append(stem)
        elif low in _DIRECTION_MARKERS:
            self.order.append(low)

    def negate(self) -> None:
        if self.neg_pending:
            self.neg_heads.add(_UNSCOPED)  # "not without": two cues, no word between
        self.negated = True
        self.neg_pending = _NEG_SCOPE

    def head_token(self, low: str) -> None:
        """A number or identifier right after a negation is what it negates."""
        if self.neg_pending:
            self.neg_heads.add(low)
            self.neg_pending = 0

    def note_run(self, run: list[str]) -> None:
        """A run of capitalised words: each may be matched by the initials of the run or
        of a part of it ("Natural Language Processing" / "NLP")."""
        n = len(run)
        if not 2 <= n <= _MAX_RUN:
            return
        for a in range(n - 1):
            for b in range(a + 2, n + 1):
                initials = "".join(w[0] for w in run[a:b])
                self.acronyms.update((w, initials) for w in run[a:b])

    def special_word(self, i: int, tok: _Token) -> None:
        """Lexicon look-ups for a word that is in some lexicon."""
        toks = self.toks
        low = tok.low
        prev = toks[i - 1] if i > 0 else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        after_number = prev is not None and (prev.kind == "num" or prev.low in _NUMBER_WORDS)
        after_one = prev is not None and prev.low in _ONE
        capital = tok.text[:1].isupper() and not tok.initial

        number = _NUMBER_WORDS.get(low)
        if number is not None:
            if low in _MAGNITUDES:
                self.scale_number(i, _MAGNITUDES[low], after_one)
            elif low in ("half", "quarter", "double", "single", "once", "twice", "triple",
                         "thrice"):
                if nxt is not None and (nxt.low in _UNITS or nxt.low in _CURRENCIES):
                    self.add_number(i, number, nxt, spelled=True)
            else:
                self.add_number(i, number, nxt, spelled=True)
        ordinal = _ORDINAL_WORDS.get(low)
        if ordinal is not None and not (low == "second" and (after_number or after_one)):
            self.ordinals.add(ordinal)

        if low in _RELATIVE_DAYS:
            self.dates.add(_RELATIVE_DAYS[low])
        elif low in _WEEKDAYS:
            self.dates.add(_WEEKDAYS[low])
        elif low in _MONTHS and (
            (low not in _AMBIGUOUS_MONTHS and (len(low) > 3 or tok.text[:1].isupper()))
            or capital
            or (nxt is not None and nxt.kind == "num")
            or (prev is not None and prev.kind == "num")
        ):
            self.dates.add(_MONTHS[low])
        if low in _PERIOD_QUALIFIERS and nxt is not None and _stem(nxt.low) in _PERIODS:
            self.dates.add(f"{_PERIOD_QUALIFIERS[low]}-{_stem(nxt.low)}")
        if low in ("morning", "afternoon", "evening", "night", "noon", "midnight"):
            self.times.add(low)

        unit = _UNITS.get(low)
        if unit is not None and not (low in ("pound", "pounds") and self.money_context):
            short = len(low) <= _SHORT_UNIT_MAX or low in _UNIT_AFTER_NUMBER_ONLY
            if not short or after_number or after_one or self._target(i):
                self.add_unit(i, unit)
        elif low in _SINGLE_LETTER_UNITS and prev is not None and prev.kind == "num":
            self.add_unit(i, _SINGLE_LETTER_UNITS[low])
        cur = _CURRENCIES.get(low)
        if low in ("pound", "pounds") and self.money_context:
            cur = "gbp"
        if cur is not None and (
            low not in _AMBIGUOUS_CURRENCIES or after_number
            or (tok.text.isupper() and len(low) == 3)
        ):
            if prev is not None and prev.low in _CURRENCY_QUALIFIERS and cur == "usd":
                cur = _CURRENCY_QUALIFIERS[prev.low]
            self.add_currency(i, cur)

        if low in _PROGRAMMING_LANGUAGES:
            self.name(_PROGRAMMING_LANGUAGES[low], language=True)
        elif low in _CAPITALISED_LANGUAGES and capital and (
            prev is None or not prev.text[:1].isupper()  # "Taylor Swift", "Pokemon Go"
        ) and (
            len(low) > 2
            or (prev is not None and prev.low in ("in", "using", "with", "learn", "write"))
            or (nxt is not None and nxt.low in ("code", "programming", "language", "program",
                                                "developer", "developers", "compiler"))
        ):
            self.name(_CAPITALISED_LANGUAGES[low], language=True)
        if low in _NATURAL_LANGUAGES or low in _DEMONYMS:
            self.name(_DEMONYMS.get(low, low), language=True)

        if low in _FORMATS:
            self.formats.add(_FORMATS[low])
            self.mentions.add(_FORMATS[low])
        elif low in _SHAPES:
            self.mentions.add(_SHAPES[low])
            if self._asked_shape(i):
                self.formats.add(_SHAPES[low])
        if low in _STYLES:
            self.styles.add(_STYLES[low])
        if low in _OPPOSITE_WORDS_SET:
            self.opposites.add(low)
        if (low in _GAZETTEER or low in _ALIASES) and (
            low not in _COMMON_WORD_NAMES or tok.text[:1].isupper()
        ):
            self.name(_ALIASES.get(low, low))

    def name_shape(self, tok: _Token, last_item: bool = False) -> None:
        """A capitalised word mid-sentence, an acronym or an "iPhone" is a name."""
        low = tok.low
        text = tok.text
        if low in _COMMON_ACRONYMS:
            return
        if len(low) == 2 and text.isupper() and not self.shouting and not tok.initial:
            # "IN", "GA", "IT", "US": two capitals are an abbreviation even when they spell
            # a common word (kept in capitals then, so the word "in" does not match "IN").
            self.name(_ALIASES.get(low) or (text if low in _STOPWORDS else low))
            return
        if low in _STOPWORDS or low == "i" or low in _MONTHS or low in _WEEKDAYS:
            return
        if low in _UNITS or low in _CURRENCIES or low in _NATURAL_LANGUAGES:
            return
        if low.endswith("ing") and low not in _GAZETTEER:
            return  # "Loading, Preprocessing, ...": capitalised gerunds are list items
        # A list item after a comma is capitalised like a sentence start ("Overview, Load").
        # So is the last one, after ", and" ("Create a dataset, and Share it").
        initial = tok.initial or tok.sep or last_item
        upper = text.isupper() and len(low) > 1 and not self.shouting
        if (upper and not (initial and len(low) > 5)) or (
            not self.title_case and not initial and text[:1].isupper()
        ) or (initial and _CAMEL_RE.search(text)):
            self.name(_ALIASES.get(low, low))

    def build(self) -> _Features:
        toks = self.toks
        run: list[str] = []
        for i, tok in enumerate(toks):
            kind = tok.kind
            if tok.sep:
                self.order.append(_SYMMETRIC_MARK)
            capital = kind == "word" and tok.text[:1].isupper() and tok.low.isalpha()
            if capital and not tok.sep and (run or tok.low not in _STOPWORDS):
                run.append(tok.low)
            else:
                self.note_run(run)
                run = [tok.low] if capital and tok.low not in _STOPWORDS else []
            if kind != "word":
                self.head_token(tok.low)
            if kind == "word":
                low = tok.low
                if (
                    _is_code_identifier(tok.text)
                    and low not in _PROGRAMMING_LANGUAGES
                    and not _VERSION_WORD_RE.match(low)
                ):
                    self.code.add(low.removesuffix("()"))
                    self.order.append(low.removesuffix("()"))
                    self.head_token(low.removesuffix("()"))
                    for part in _IDENT_PART_RE.findall(low):
                        self.stems.add(_stem(part))
                    continue
                if not low.isalpha() and any(ch.isdigit() for ch in low):
                    self.alnum_word(i, tok)
                    continue
                self.plain_word(low)
                if (
                    low in _WH_WORDS
                    and (i == 0 or (i == 1 and toks[0].low in _WH_LEADS))
                    and i + 1 < len(toks)
                    and toks[i + 1].low in _AUXILIARIES
                ):
                    # "When is X?" asks for a time; "When you access X, ..." does not.
                    self.asks.add(low)
                if _FLAGS.get(low, 0) & _F_SPECIAL:
                    self.special_word(i, tok)
                if tok.text[:1].isupper() or not tok.text.islower():
                    prev = toks[i - 1] if i else None
                    self.name_shape(
                        tok, prev is not None and prev.sep and prev.low in ("and", "or")
                    )
            elif kind == "num":
                for part in tok.low.split("/"):
                    self.number_token(i, _Token(part, part, "num", tok.initial))
            elif kind == "cur":
                self.add_currency(i, _CURRENCY_SYMBOLS[tok.text])
            elif kind == "op":
                self.code.add(tok.text)
            else:  # backticked code
                ident = tok.text.strip("`").strip().lower()
                self.code.add(ident.removesuffix("()"))
                self.order.append(ident.removesuffix("()"))
                for part in _IDENT_PART_RE.findall(ident):
                    self.stems.add(_stem(part))
        self.note_run(run)
        if self.neg_pending:
            self.neg_heads.add(_UNSCOPED)
        words = tuple(self.words)
        return _Features(
            words=words,
            word_set=frozenset(words),
            order=tuple(self.order),
            initials="".join(w[0] for w in words if not _FLAGS.get(w, 0) & _F_STOP),
            stems=frozenset(self.stems),
            content=frozenset(self.content),
            numbers=frozenset(self.numbers),
            spelled=frozenset(self.spelled),
            versions=frozenset(v for v in self.versions if v),
            ordinals=frozenset(self.ordinals),
            dates=frozenset(self.dates),
            times=frozenset(self.times),
            units=frozenset(self.units),
            unit_targets=frozenset(self.unit_targets),
            currencies=frozenset(self.currencies),
            currency_targets=frozenset(self.currency_targets),
            conversions=self._conversions(),
            routes=self._routes(),
            negated=self.negated,
            neg_heads=frozenset(self.neg_heads),
            passive=frozenset(self.passive),
            acronyms=frozenset(self.acronyms),
            asks=frozenset(self.asks),
            entities=frozenset(self.entities),
            code=frozenset(self.code),
            languages=frozenset(self.languages),
            formats=frozenset(self.formats),
            mentions=frozenset(self.mentions),
            styles=frozenset(self.styles),
            opposites=frozenset(self.opposites),
        )

    def _conversions(self) -> frozenset[tuple[str, str]]:
        """(from, to) pairs of units or currencies: "USD to EUR", "how many km in 5 miles"."""
        toks, slots = self.toks, self.slots
        pairs: set[tuple[str, str]] = set()
        for (i, a), (j, b) in itertools.pairwise(slots):
            if a == b:
                continue
            between = {t.low for t in toks[i + 1 : j]}
            if i > 0 and toks[i - 1].low in ("many", "much"):
                # "how many euros is a dollar": the unit asked for comes first.
                pairs.add((b, a))
            elif between & _CONVERSION_LINKS:
                pairs.add((a, b))
        return frozenset(pairs)

    def _routes(self) -> frozenset[tuple[str, str]]:
        """"from A to B" and "to B from A", as (A, B)."""
        toks = self.toks
        lows = [t.low for t in toks]
        if "from" not in lows:
            return frozenset()
        out: set[tuple[str, str]] = set()

        def next_content(k: int) -> str | None:
            for t in toks[k + 1 : k + 4]:
                if t.kind != "word" or t.low not in _STOPWORDS:
                    return _ALIASES.get(t.low, _stem(t.low))
            return None

        for k, low in enumerate(lows):
            if low != "from":
                continue
            a = next_content(k)
            if a is None:
                continue
            for k2 in range(k + 1, min(len(lows), k + 6)):
                if lows[k2] in ("to", "into"):
                    b = next_content(k2)
                    if b is not None:
                        out.add((a, b))
                    break
            for k2 in range(max(0, k - 5), k):
                if lows[k2] in ("to", "into"):
                    b = next_content(k2)
                    if b is not None and b != a:
                        out.add((a, b))
        return frozenset(out)


@lru_cache(maxsize=16384)
def _features(text: str) -> _Features:
    return _Builder(_tokenise(_normalise(text))).build()


# --------------------------------------------------------------------------- comparing

_NAME_SUFFIXES = ("n", "an", "ian", "ese", "ish", "ans", "ns", "s", "es", "i", "ic")


def _fmt(values: Iterable[str]) -> str:
    vals = sorted(values)
    return ",".join(vals) if vals else "-"


def _close_spelling(a: str, b: str) -> bool:
    """One edit apart ("Hilary"/"Hillary"), for names long enough to be unambiguous."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    for k in range(len(long_)):
        if long_[:k] + long_[k + 1 :] == short:
            return True
    return False


def _present(name: str, feats: _Features) -> bool:
    """Whether a name from one text also appears in the other, in any case or form."""
    if name in feats.entities or name in feats.word_set or name in feats.languages:
        return True
    if _stem(name) in feats.stems or _DEMONYMS.get(name) in feats.entities:
        return True
    if " " in name:
        return all(part in feats.word_set for part in name.split())
    if 2 <= len(name) <= 5 and name.isalpha() and name in feats.initials:
        return True  # "ML" / "machine learning"
    for other in feats.word_set:
        if other[:3] != name[:3]:
            continue
        if other.startswith(name) and other[len(name) :] in _NAME_SUFFIXES:
            return True
        if name.startswith(other) and len(other) >= 4 and name[len(other) :] in _NAME_SUFFIXES:
            return True
        if _close_spelling(name, other):
            return True
    return False


def _entity_present(name: str, own: _Features, other: _Features) -> bool:
    """``_present``, or a word of a capitalised run whose initials the other text names."""
    if _present(name, other):
        return True
    return any(
        w == name and (a in other.entities or a in other.word_set) for w, a in own.acronyms
    )


def _language_present(lang: str, feats: _Features) -> bool:
    if lang in feats.languages or _present(lang, feats):
        return True
    # "Chinese" matches "China" and the other way round.
    return any(_DEMONYMS.get(w) == lang for w in feats.word_set) or (
        lang in _DEMONYMS.values() and lang in feats.word_set
    )


def _code_present(ident: str, feats: _Features, own: _Features) -> bool:
    if ident in feats.code:
        return True
    # "Hugging Face.js" / "Huggingface.js": the word before it, written together.
    if any(o.endswith(ident) and o[: len(o) - len(ident)] in own.word_set for o in feats.code):
        return True
    # "list_datasets" and "datasets.list_datasets" name the same function.
    if any(o.endswith("." + ident) or ident.endswith("." + o) for o in feats.code):
        return True
    # A bare word in one text matches the same word in backticks in the other.
    return ident.isidentifier() and ident in feats.word_set


def _swapped_around_marker(qw: Sequence[str], cw: Sequence[str]) -> bool:
    """The words next to a marker changed sides: "convert PDF to Word" / "Word to PDF".

    For each side of the marker, the nearest shared word that did not stay on that side
    must have crossed to the other side, in both directions ("is renting cheaper than
    buying" / "is buying cheaper than renting": "cheaper" stays, the two others cross).
    Only words near the marker and occurring once in each text count, so a fronted
    clause or another reordered paraphrase does not trip it.
    """
    markers = _DIRECTION_MARKERS.intersection(qw).intersection(cw)
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
    # object without changing the question ("X is mentioned in the document" / "the
    # document mentions X").
    voice = qf.passive ^ cf.passive
    return (
        _block_swapped(qf.order, cf.order, voice)
        or (close and _swapped_around_marker(qf.words, cf.words))
        or (not voice and _roles_swapped(qf, cf))
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


_COMPOUND_GAP = 2  # "Google CEO", "CEO of Google": one name, not two roles


def _compound(words: Sequence[str], x: str, y: str) -> bool:
    """Whether names ``x`` and ``y`` (stems) stand together as one phrase: next to each
    other or joined by small words only ("Google CEO", "CEO of Google"), not by a verb
    ("Pakistan attacks India")."""
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


def _roles_swapped(qf: _Features, cf: _Features) -> bool:
    """Two names both texts share traded places: "what can you do in Japan that you
    cannot in the USA" / "in USA that you cannot do in Japan", "if Pakistan attacks
    India" / "if India attacks Pakistan". The texts must line up better with the two
    exchanged than as written, so a name that merely moved ("IIT coaching in Patna" /
    "coaching in Patna for the IIT") does not count, nor names with "and"/"or" between
    them ("SBI clerk or IBPS PO" / "IBPS PO or SBI clerk"; this also lets "import from
    India and sell in Canada" through), nor a compound said the other way round ("CEO of
    Google" / "Google CEO").
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
        if (_SYMMETRIC_MARK in qo[min(qx, qy) : max(qx, qy)]
                or _SYMMETRIC_MARK in co[min(cx, cy) : max(cx, cy)]):
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

    "Is Messi better than Ronaldo" / "Ronaldo better than Messi", "data science graduates apply for
    psychology" / "psychology graduates apply for data science". The frame between the
    parts must be non-empty (an adjacent swap is word order: "fast online" / "online
    fast") and hold no "and"/"or"/comma, where order means nothing ("Python or Java"),
    nor a verb in ``voice`` (passive in one text only: the voice changed, not the roles).
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


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _guard(qf: _Features, cf: _Features) -> list[str]:
    reasons: list[str] = []
    close = _jaccard(qf.content, cf.content) >= _CLOSE_JACCARD

    # Numbers: a different one, or a written value on one side only ("in 2 days" / "in a
    # few days"); a spelled-out count in prose ("two steps") must be contradicted. A number
    # on one side may be an ordinal on the other ("world war 2" / "2nd world war").
    q_all, c_all = qf.numbers | qf.spelled, cf.numbers | cf.spelled
    qn = q_all - c_all - cf.ordinals
    cn = c_all - q_all - qf.ordinals
    if (qn and cn) or (qn & qf.numbers) or (cn & cf.numbers):
        reasons.append(f"number:{_fmt(qn)}!={_fmt(cn)}")
    qv, cv = qf.versions - cf.versions, cf.versions - qf.versions
    if qv or cv:
        reasons.append(f"version:{_fmt(qv)}!={_fmt(cv)}")
    qo = qf.ordinals - cf.ordinals - cf.numbers
    co = cf.ordinals - qf.ordinals - qf.numbers
    if qo and co:
        reasons.append(f"ordinal:{_fmt(qo)}!={_fmt(co)}")

    # Dates: a different one, or a one-sided move away from now ("tomorrow").
    qd, cd = qf.dates - cf.dates, cf.dates - qf.dates
    if (qd and cd) or any(d in _MARKED_DATES or d.startswith(("next-", "last-"))
                          for d in qd | cd):
        reasons.append(f"date:{_fmt(qd)}!={_fmt(cd)}")
    qt, ct = qf.times - cf.times, cf.times - qf.times
    if (qt and ct) or any(":" in t for t in qt | ct):
        reasons.append(f"time:{_fmt(qt)}!={_fmt(ct)}")

    # Units and currencies: a different one, or one asked for on one side only ("in km").
    qu, cu = qf.units - cf.units, cf.units - qf.units
    # A duration asked for on one side only is a time frame ("in a month"), not a unit.
    if (qu and cu) or (qu & qf.unit_targets - _DURATIONS) or (
        cu & cf.unit_targets - _DURATIONS
    ):
        reasons.append(f"unit:{_fmt(qu)}!={_fmt(cu)}")
    qc, cc = qf.currencies - cf.currencies, cf.currencies - qf.currencies
    if (qc and cc) or (qc & qf.currency_targets) or (cc & cf.currency_targets):
        reasons.append(f"currency:{_fmt(qc)}!={_fmt(cc)}")

    # Negation and swapped order: a near-miss of this kind differs only by a cue word or by order,
    # so both need the same words; heavy rewrites move negation and order around freely.
    # The negated text must negate something the other one says ("with food" / "without
    # food"); a negation of a word the other never uses is a rewording ("eliminates the
    # need for coding" / "without requiring you to write any code").
    if qf.negated != cf.negated and close:
        neg, other = (qf, cf) if qf.negated else (cf, qf)
        if any(h == _UNSCOPED or h in other.stems for h in neg.neg_heads):
            reasons.append("negation")
    # "A slower than B" / "B faster than A": a swap and an opposite cancel out.
    q_opp, c_opp = qf.opposites - cf.opposites, cf.opposites - qf.opposites
    flips = sorted(f"{a}!={b}" for a in q_opp for b in c_opp if b in _OPPOSITE_OF[a])
    swapped = _direction(qf, cf, close)
    if swapped and not flips:
        reasons.append("direction")
    if close and qf.asks != cf.asks:
        q_wh = {w for w in qf.asks - cf.asks if w not in cf.word_set
                and not _WH_WORDS[w] & cf.word_set}
        c_wh = {w for w in cf.asks - qf.asks if w not in qf.word_set
                and not _WH_WORDS[w] & qf.word_set}
        if q_wh or c_wh:
            reasons.append(f"question:{_fmt(q_wh)}!={_fmt(c_wh)}")

    ql = {x for x in qf.languages if not _language_present(x, cf)}
    cl = {x for x in cf.languages if not _language_present(x, qf)}
    if ql or cl:
        reasons.append(f"language:{_fmt(ql)}!={_fmt(cl)}")
    # A shape asked for on one side may be a mere topic word on the other ("as a table" /
    # "which table"): only a shape the other text never mentions differs.
    qfmt = {f for f in qf.formats - cf.formats if f not in cf.mentions}
    cfmt = {f for f in cf.formats - qf.formats if f not in qf.mentions}
    if qfmt or cfmt:
        reasons.append(f"format:{_fmt(qfmt)}!={_fmt(cfmt)}")
    qs, cs = qf.styles - cf.styles, cf.styles - qf.styles
    if any((a, b) in _OPPOSITE_STYLES or (b, a) in _OPPOSITE_STYLES for a in qs for b in cs):
        reasons.append(f"format:{_fmt(qs)}!={_fmt(cs)}")

    q_code = {c for c in qf.code if not _code_present(c, cf, qf)}
    c_code = {c for c in cf.code if not _code_present(c, qf, cf)}
    if q_code and c_code:
        reasons.append(f"code_identifier:{_fmt(q_code)}!={_fmt(c_code)}")

    q_ent = {e for e in qf.entities if not _entity_present(e, qf, cf)}
    c_ent = {e for e in cf.entities if not _entity_present(e, cf, qf)}
    # Another name, or a name added to the same words ("intern at Cisco" / "intern at
    # Cisco in Chicago"): the answer is about something else or something narrower.
    if (q_ent and c_ent) or ((q_ent or c_ent) and close):
        reasons.append(f"entity:{_fmt(q_ent)}!={_fmt(c_ent)}")

    # "best" / "worst" flips the question, unless a negation or a swap flips it back ("not
    # the same" / "different", "A more than B" / "B less than A").
    if flips and not swapped and qf.negated == cf.negated and not _inverted(qf.order, cf.order):
        reasons.append(f"opposite:{flips[0]}")
    return reasons


@lru_cache(maxsize=16384)
def guard_reasons(query: str, candidate: str) -> tuple[str, ...]:
    """Why serving ``candidate``'s answer for ``query`` would be wrong; empty if no veto.

    Reasons are short and machine-readable, e.g. ``"number:3.11!=3.12"``,
    ``"date:today!=tomorrow"``, ``"negation"``, ``"direction"``,
    ``"entity:paris!=london"``; the left side is the query's.
    """
    if query == candidate:
        return ()
    return tuple(_guard(_features(query), _features(candidate)))


def word_overlap(query: str, candidate: str) -> float:
    """Jaccard overlap of the two texts' lower-cased words, in [0, 1].

    The router's tie-break: when two accepted candidates are equally near by the
    embedding, the one worded most like the query is most likely the same question.
    """
    return _jaccard(_features(query).word_set, _features(candidate).word_set)


# --------------------------------------------------------------------------- decision

#: Inputs of the learned scorer, in the order of its weights. The risk feature is 0 for a
#: clean paraphrase, whose score is then exactly its cosine. Only signals whose effect
#: has the same sign on both development sets (pairwise questions and retrieval
#: paraphrases, fitted separately) are kept: lexical overlap, added qualifiers and
#: length flip sign between them, and so do one-sided numbers and dates (a paraphrase
#: spells "two steps" out or drops a year the guard already judged), so they would not
#: generalise.
FEATURE_NAMES: tuple[str, ...] = ("cosine", "unmatched_names")
_FEATURE_CAP = 3.0


def pair_features(query: str, candidate: str, similarity: float) -> tuple[float, ...]:
    """The scorer's inputs for one pair (see :data:`FEATURE_NAMES`).

    ``unmatched_names`` counts the names (places, products, people, acronyms) that one
    text pins down and the other does not mention: one-sided, so no veto ("in Delhi,
    India" / "in India"), but less trust.
    """
    qf, cf = _features(query), _features(candidate)
    names = sum(1 for e in qf.entities if not _entity_present(e, qf, cf)) + sum(
        1 for e in cf.entities if not _entity_present(e, cf, qf)
    )
    return (float(similarity), min(float(names), _FEATURE_CAP))


@dataclass(frozen=True, slots=True)
class GuardModel:
    """A logistic scorer read on the cosine scale, as a penalty.

    The logistic model is ``bias + weights . features`` with the cosine first. Dividing
    the risk terms by the cosine weight gives how much cosine each unit of risk is worth;
    the score is ``cosine + min(0, risk)``, floored at ``cosine - max_shift``. Risk only
    lowers a score, so a clean pair keeps its cosine and the threshold keeps its meaning.
    """

    weights: tuple[float, ...]
    bias: float = 0.0
    max_shift: float = 0.05

    def score(self, features: Sequence[float]) -> float:
        cosine = features[0]
        slope = self.weights[0]
        if slope <= 0:
            return cosine
        risk = sum(w * x for w, x in zip(self.weights[1:], features[1:], strict=True)) / slope
        return cosine + max(-self.max_shift, min(0.0, risk))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuardModel:
        names = tuple(data["features"])
        if names != FEATURE_NAMES:
            raise ValueError(f"guard model features {names} != {FEATURE_NAMES}")
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data.get("bias", 0.0)),
            max_shift=float(data.get("max_shift", 0.05)),
        )


@lru_cache(maxsize=1)
def shipped_model() -> GuardModel | None:
    """The scorer committed beside this module (``_guard_model.json``), if any; read once
    (the engine warms this on a worker thread so the event loop never reads the file)."""
    try:
        raw = resources.files(__package__ or "cacheback.engine").joinpath(
            "_guard_model.json"
        ).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return None
    return GuardModel.from_json(json.loads(raw))


@dataclass(frozen=True, slots=True)
class Decision:
    """A verbatim hit or not, the calibrated score it was judged on, the guard's reasons."""

    hit: bool
    score: float
    reasons: tuple[str, ...] = ()


def verbatim_decision(
    query: str,
    candidate: str,
    similarity: float,
    threshold: float = 0.92,
    *,
    guard: bool = True,
    model: GuardModel | None = None,
) -> Decision:
    """Whether ``candidate``'s cached answer may be served for ``query``.

    ``score`` is on the cosine scale (see :class:`GuardModel`) and the hit is
    ``score >= threshold`` with no guard veto, so raising the threshold only removes
    hits. ``guard=False`` is the plain cosine rule. ``model`` overrides the shipped
    scorer (for training and evaluation).
    """
    similarity = float(similarity)
    if not guard:
        return Decision(similarity >= threshold, similarity)
    if query == candidate:
        return Decision(similarity >= threshold, similarity)
    reasons = guard_reasons(query, candidate)
    scorer = model if model is not None else shipped_model()
    score = similarity if scorer is None else scorer.score(
        pair_features(query, candidate, similarity)
    )
    return Decision(not reasons and score >= threshold, score, reasons)


def filter_synthesis_candidates(
    query: str, candidates: Sequence[T], text_of: Callable[[T], str] | None = None
) -> list[T]:
    """The candidates a synthesis prompt may draw on: those the guard does not veto.

    An answer built from "Python 3.11" facts is as wrong for a "3.12" question as a
    verbatim hit would be. ``text_of`` gives a candidate's question text (default: the
    candidate itself if it is a string, else its ``entry.query``, as on
    :class:`~cacheback.engine._types.Candidate`).
    """

    def text(c: T) -> str:
        if text_of is not None:
            return text_of(c)
        if isinstance(c, str):
            return c
        return str(c.entry.query)  # type: ignore[attr-defined]

    return [c for c in candidates if not guard_reasons(query, text(c))]
