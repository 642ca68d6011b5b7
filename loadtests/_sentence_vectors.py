"""Synthetic 384-d vectors with the structure of sentence embeddings, for index benchmarks.

A million real questions are not at hand, so the vectors are grown from real embeddings:

1. **Sentences.** A few thousand questions are composed from templates (``compose``): topic
   families (programming how-tos, facts about countries, science, shell tasks, history,
   books, cooking, travel, health, money, sport) with slots filled from word lists, in
   several phrasings ("How do I ...", "What's the way to ...", ...). Sentences of one family
   share words, so their MiniLM embeddings cluster by topic, then by subtopic (the same
   slot values), as real questions do. Every sentence is embedded by the shipped model.
2. **Phrasings.** Around every sentence, a few "phrasing" centres at cosine 0.80-0.95 to
   it; some are mixtures with another sentence of the same family (the continuum between
   two related questions). Offsets are drawn from the sentences' own covariance, so they
   point along the directions real embeddings vary in, not isotropically.
3. **Entries.** Around every phrasing centre, entries at cosine 0.80-0.97 to it (smaller
   offsets again: topic > subtopic > phrasing > entry, each level tighter).

The real question/paraphrase pairs of the benchmark are sentences of this set like any
other (so they have neighbours: template questions on the same subject, and entries grown
around them), except that no entry grown around a real question comes closer to it than
cosine 0.85, so the real paraphrase stays the closest thing to its question in most cases
(the benchmarks count how often another entry is nearer, by brute force).

What this is not: a sample of real traffic. Templates are more repetitive than people,
and the entry clouds are Gaussian in the sentence subspace. It is a middle ground between
the ``clustered`` generator (isotropic noise inside 2000 clusters, no gradient toward a
near-duplicate: the pessimistic bound) and real data; recall measured on it is an
estimate, not a guarantee. No labelled evaluation data is read.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
DIM = 384

_LANGS = [
    "Python",
    "JavaScript",
    "Java",
    "Go",
    "Rust",
    "C#",
    "Ruby",
    "PHP",
    "Kotlin",
    "Swift",
    "TypeScript",
    "C++",
    "Scala",
    "Perl",
    "Haskell",
    "Elixir",
    "Dart",
    "Lua",
    "R",
    "Julia",
]
_OPS = [
    "reverse",
    "sort",
    "copy",
    "split",
    "join",
    "merge",
    "filter",
    "convert",
    "count the items of",
    "find the length of",
    "iterate over",
    "print",
    "serialize",
    "parse",
    "shuffle",
    "deduplicate",
    "compare",
    "slice",
    "flatten",
    "search",
]
_OBJS = [
    "a string",
    "a list",
    "an array",
    "a dictionary",
    "a set",
    "a file",
    "a JSON object",
    "a CSV file",
    "a date",
    "a tuple",
    "a map",
    "a byte buffer",
    "a linked list",
    "a matrix",
]
_PLACES = [
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Canada",
    "Australia",
    "India",
    "Kenya",
    "Mexico",
    "Norway",
    "Egypt",
    "Peru",
    "Italy",
    "Spain",
    "China",
    "Chile",
    "Turkey",
    "Vietnam",
    "Poland",
    "Argentina",
    "Morocco",
    "Sweden",
    "Greece",
    "Thailand",
    "Nigeria",
    "Ireland",
    "Portugal",
    "Iceland",
    "Nepal",
    "Cuba",
]
_ATTRS = [
    "capital city",
    "population",
    "currency",
    "official language",
    "largest city",
    "area",
    "national dish",
    "time zone",
    "highest mountain",
    "longest river",
    "flag",
    "climate",
]
_THINGS = [
    "water",
    "gold",
    "iron",
    "copper",
    "silver",
    "oxygen",
    "nitrogen",
    "helium",
    "carbon",
    "sodium",
    "mercury",
    "lead",
    "uranium",
    "ethanol",
    "salt",
    "glass",
    "steel",
    "ice",
]
_PROPS = [
    "boiling point",
    "melting point",
    "density",
    "chemical symbol",
    "atomic number",
    "specific heat",
    "molar mass",
    "half-life",
    "colour",
    "electrical conductivity",
]
_TASKS = [
    "check disk usage",
    "kill a process by port",
    "install Node.js",
    "find a file by name",
    "list open ports",
    "change file permissions",
    "create a new user",
    "update all packages",
    "see memory usage",
    "schedule a cron job",
    "mount a USB drive",
    "set an environment variable",
    "check the kernel version",
    "compress a folder",
    "restart the network",
    "view system logs",
]
_OSES = ["Linux", "Ubuntu", "macOS", "Windows", "Debian", "Fedora", "Arch Linux", "CentOS", "FreeBSD"]
_EVENTS = [
    "the Berlin Wall fall",
    "the First World War start",
    "the French Revolution begin",
    "humans land on the Moon",
    "the Titanic sink",
    "the Roman Empire fall",
    "the internet begin",
    "the printing press appear",
    "the Cold War end",
    "the Great Depression start",
    "the Eiffel Tower open",
    "India become independent",
    "the Soviet Union collapse",
    "the American Civil War end",
    "the euro launch",
    "the first iPhone come out",
]
_BOOKS = [
    "Pride and Prejudice",
    "War and Peace",
    "Moby-Dick",
    "Don Quixote",
    "Hamlet",
    "Ulysses",
    "The Odyssey",
    "Frankenstein",
    "Dracula",
    "Jane Eyre",
    "The Great Gatsby",
    "Les Misérables",
    "Crime and Punishment",
    "One Hundred Years of Solitude",
    "The Hobbit",
    "Brave New World",
]
_DISHES = [
    "pancakes",
    "risotto",
    "sourdough bread",
    "a chocolate cake",
    "lasagna",
    "pad thai",
    "hummus",
    "a roast chicken",
    "guacamole",
    "miso soup",
    "a vegetable curry",
    "brownies",
    "pizza dough",
    "fried rice",
    "tomato sauce",
    "banana bread",
]
_COOK = ["make", "bake", "cook", "prepare", "store", "freeze", "reheat"]
_TRAVEL = [
    "get a visa for",
    "travel cheaply in",
    "find a hotel in",
    "rent a car in",
    "get around by train in",
    "stay safe in",
    "pay by card in",
    "find vegetarian food in",
]
_HEALTH = [
    "a headache",
    "a cold",
    "back pain",
    "insomnia",
    "a sore throat",
    "high blood pressure",
    "a sunburn",
    "seasonal allergies",
    "a sprained ankle",
    "stress",
    "a fever",
    "heartburn",
]
_MONEY = [
    "open a savings account",
    "start investing",
    "pay off a credit card",
    "build a budget",
    "file my taxes",
    "save for retirement",
    "improve my credit score",
    "buy index funds",
    "refinance a mortgage",
    "send money abroad",
]
_SPORTS = [
    "football",
    "basketball",
    "tennis",
    "chess",
    "golf",
    "cricket",
    "swimming",
    "cycling",
    "rugby",
    "baseball",
    "volleyball",
    "running",
]
_SPORT_Q = [
    "What are the rules of",
    "How do I get better at",
    "Who invented",
    "How is scoring done in",
    "What equipment do I need for",
    "What are good drills for",
]
_HOW = ["How do I", "How can I", "What's the way to", "What is the best way to", "Is there a way to"]
_WHAT = ["What is", "Tell me", "Do you know", "Which is"]


def compose(limit: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Up to ``limit`` distinct (question, family) pairs from the templates, shuffled."""
    families: list[list[str]] = [
        [f"{h} {op} {obj} in {lang}?" for h, op, obj, lang in itertools.product(_HOW, _OPS, _OBJS, _LANGS)],
        [f"{w} the {a} of {p}?" for w, a, p in itertools.product(_WHAT, _ATTRS, _PLACES)],
        [f"{w} the {p} of {t}?" for w, p, t in itertools.product(_WHAT, _PROPS, _THINGS)],
        [f"{h} {t} on {o}?" for h, t, o in itertools.product(_HOW, _TASKS, _OSES)],
        [f"{q} did {e}?" for q, e in itertools.product(["What year", "In which year", "When"], _EVENTS)],
        [
            f"{q} {b}?"
            for q, b in itertools.product(
                [
                    "Who wrote",
                    "What is the plot of",
                    "When was it published:",
                    "Is it worth reading",
                    "What are the main themes of",
                    "Who is the main character of",
                ],
                _BOOKS,
            )
        ],
        [f"{h} {c} {d}?" for h, c, d in itertools.product(_HOW, _COOK, _DISHES)],
        [f"{h} {t} {p}?" for h, t, p in itertools.product(_HOW, _TRAVEL, _PLACES)],
        [
            f"{q} {x}?"
            for q, x in itertools.product(
                [
                    "How do I treat",
                    "What helps with",
                    "When should I see a doctor about",
                    "What causes",
                    "How long does it take to recover from",
                    "How can I prevent",
                ],
                _HEALTH,
            )
        ],
        [f"{h} {m}?" for h, m in itertools.product(_HOW, _MONEY)],
        [f"{q} {s}?" for q, s in itertools.product(_SPORT_Q, _SPORTS)],
    ]
    # Draw from every family in proportion to its size, but at least a share of the small ones.
    sizes = np.array([len(f) for f in families], dtype=np.float64)
    weights = np.sqrt(sizes) / np.sqrt(sizes).sum()
    quota = np.minimum(sizes, np.maximum(1, np.round(weights * limit))).astype(int)
    out: list[tuple[str, int]] = []
    for fam, (texts, q) in enumerate(zip(families, quota, strict=True)):
        for i in rng.choice(len(texts), int(q), replace=False):
            out.append((texts[int(i)], fam))
    order = rng.permutation(len(out))
    return [out[int(i)] for i in order][:limit]


def unit(mat: NDArray[Any]) -> F32:
    out: F32 = (mat / np.linalg.norm(mat, axis=1, keepdims=True)).astype(np.float32)
    return out


class SentenceVectors:
    """Entries grown around real sentence embeddings (see the module's docstring).

    ``plant``: texts (the real stored questions) added to the sentences; ``planted`` gives
    their embeddings' rows in ``sentences``. ``rows(n)`` yields the entries.
    """

    def __init__(
        self,
        embedder: Any,
        rng: np.random.Generator,
        *,
        sentences: int = 4000,
        plant: Sequence[str] = (),
        avoid: Sequence[str] = (),
    ) -> None:
        banned = {t.strip().lower() for t in [*plant, *avoid]}
        texts = [(t, f) for t, f in compose(sentences, rng) if t.strip().lower() not in banned]
        texts = texts[: max(0, sentences - len(plant))]
        all_texts = [t for t, _ in texts] + list(plant)
        family = np.array([f for _, f in texts] + [-1] * len(plant))
        vecs = [embedder.embed(all_texts[i : i + 64]) for i in range(0, len(all_texts), 64)]
        emb = unit(np.concatenate(vecs))
        planted = np.arange(len(texts), len(all_texts))
        # A real question's family: the template family of its nearest composed sentence.
        if len(plant):
            family[planted] = family[np.argmax(emb[planted] @ emb[: len(texts)].T, axis=1)]
        self._setup(rng, all_texts, emb, family, planted)

    def _setup(
        self,
        rng: np.random.Generator,
        texts: list[str],
        emb: F32,
        family: NDArray[Any],
        planted: NDArray[Any],
    ) -> None:
        self.rng = rng
        self.texts = texts
        self.sentences = emb
        self.family = family
        self.planted = planted
        # Offsets along the directions sentence embeddings vary in (their covariance).
        vals, vecs = np.linalg.eigh(np.cov(self.sentences, rowvar=False))
        self._basis = (vecs * np.sqrt(np.clip(vals, 0, None))).T.astype(np.float32)
        self._by_family = {int(f): np.flatnonzero(self.family == f) for f in np.unique(self.family)}

    def save(self, path: Any) -> None:
        np.savez(
            path, texts=np.array(self.texts), emb=self.sentences, family=self.family, planted=self.planted
        )

    @classmethod
    def load(cls, path: Any, rng: np.random.Generator) -> SentenceVectors:
        """The same sentences again (no model needed), e.g. in a child process."""
        z = np.load(path)
        obj = cls.__new__(cls)
        obj._setup(rng, [str(t) for t in z["texts"]], z["emb"], z["family"], z["planted"])
        return obj

    def around(self, centres: F32, lo: float, hi: float) -> F32:
        """Unit rows at a cosine drawn from [lo, hi] to each row of ``centres``."""
        g = self.rng.standard_normal(centres.shape, dtype=np.float32) @ self._basis
        g -= np.sum(g * centres, axis=1, keepdims=True) * centres
        g = unit(g)
        c = self.rng.uniform(lo, hi, size=(centres.shape[0], 1)).astype(np.float32)
        return unit(c * centres + np.sqrt(1 - c * c) * g)

    def rows(self, n: int, *, phrasings: int = 8, chunk: int = 50_000) -> F32:
        """``n`` entries: sentences > phrasings > entries, each level tighter."""
        s = self.sentences.shape[0]
        # Phrasing centres: a sentence, sometimes mixed with another of its family.
        owner = np.repeat(np.arange(s), phrasings)
        base = self.sentences[owner].copy()
        mix = self.rng.random(owner.shape[0]) < 0.3
        for i in np.flatnonzero(mix):
            mates = self._by_family[int(self.family[owner[i]])]
            other = self.sentences[int(self.rng.choice(mates))]
            base[i] = base[i] + self.rng.uniform(0.1, 0.5) * (other - base[i])
        centres = self.around(unit(base), 0.80, 0.95)
        planted = np.isin(owner, self.planted)
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            pick = self.rng.integers(0, centres.shape[0], m)
            block = self.around(centres[pick], 0.80, 0.97)
            # Entries grown around a real question stay below cosine 0.85 to it.
            near_real = np.flatnonzero(planted[pick])
            if near_real.size:
                real = self.sentences[owner[pick[near_real]]]
                too_close = np.sum(block[near_real] * real, axis=1) > 0.85
                redo = near_real[too_close]
                block[redo] = self.around(self.sentences[owner[pick[redo]]], 0.55, 0.85)
            out[start : start + m] = block
        return out
