"""Augmented near pairs for calibrating the miss probe on own data (no eval rows): sentences
of the build corpus that the build does not use, as themselves or inside question
templates, each edited twice by one or two of: dropped words, a swapped pair, a rotation,
a filler prefix or suffix, casing, and 1-2 words replaced by a near token of the model
(the nearest rows of each vocabulary token run alone through it). The model's vectors of
both sides decide which pairs are hits (the model is the teacher, not labels)."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_miss_probe as b

PREFIX = ["Hi,", "Please", "Quick question:", "Hey", "So", "Can you tell me", "I want to know",
          "Hello, I have a question.", "Help:", "Explain:"]  # fmt: skip
SUFFIX = ["thanks", "please", "?", "now", "again", "thank you", "in detail", "briefly", "asap", "for me"]


def augmented(work: Path, embedder: Any) -> tuple[list[str], list[tuple[str, str]], Any, Any]:
    """(bases, pairs, base vectors, variant vectors), cached in ``work``."""
    if (work / "aug.npz").is_file():
        a = json.loads((work / "aug.json").read_text())
        arr = np.load(work / "aug.npz")
        return a["bases"], [tuple(p) for p in a["pairs"]], arr["mb"], arr["mv"]
    _, tok = embedder._load()
    vocab = tok.get_vocab()
    sents = json.loads((work / "sentences.json").read_text())
    shuffled = list(sents)
    random.Random(7).shuffle(shuffled)  # as the build's make_texts: it uses the first 24,000
    free = shuffled[24000:]
    t = np.load(work / "data.npz")["T"]
    t = t[:, 1, :] if t.ndim == 3 else t
    words = sorted(w for w in vocab if re.fullmatch(r"[a-z]{3,}", w))
    rows = t[np.array([vocab[w] for w in words])]
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    index = {w: i for i, w in enumerate(words)}
    rng = random.Random(11)
    near: dict[str, list[str]] = {}

    def synonym(w: str) -> str | None:
        lw = w.lower().strip(",.;:?!")
        if lw not in index:
            return None
        if lw not in near:
            near[lw] = [words[i] for i in np.argsort(-(rows @ rows[index[lw]]))[1:4]]
        return rng.choice(near[lw])

    def op(s: str) -> str:
        w = s.split()
        k = rng.randrange(8)
        if k == 0 and len(w) > 4:
            for _ in range(rng.randint(1, 2)):
                if len(w) > 3:
                    del w[rng.randrange(len(w))]
        elif k == 1 and len(w) > 3:
            i = rng.randrange(len(w) - 1)
            w[i], w[i + 1] = w[i + 1], w[i]
        elif k == 2 and len(w) > 5:
            i = rng.randrange(2, len(w) - 2)
            w = w[i:] + w[:i]
        elif k == 3:
            w = rng.choice(PREFIX).split() + w
        elif k == 4:
            w = w + rng.choice(SUFFIX).split()
        elif k == 5:
            if rng.random() < 0.6:
                return s.lower().rstrip(".?!")
            return s.upper() if rng.random() < 0.2 else s.capitalize()
        else:
            for _ in range(rng.randint(1, 2)):
                i = rng.randrange(len(w))
                sy = synonym(w[i])
                if sy:
                    w[i] = sy
        return " ".join(w)

    def frag(s: str) -> str:
        s = s.rstrip(".?!")
        return s[0].lower() + s[1:]

    bases = []
    for s in free[:2000]:
        r = rng.random()
        if r < 0.4:
            bases.append(s)
        elif r < 0.75:
            bases.append(
                rng.choice(b.TEMPLATES).format(
                    f=frag(s), a=rng.choice(words), b=rng.choice(words), c=rng.choice(words)
                )
            )
        else:
            w = frag(s).split()[: rng.randint(3, 8)]
            bases.append(rng.choice(b.TEMPLATES).format(f=" ".join(w), a=w[-1], b=w[0], c=rng.choice(words)))
    pairs = []
    for base in bases:
        for _ in range(2):
            v = op(base)
            if rng.random() < 0.5:
                v = op(v)
            pairs.append((base, v))
    mb, mv = embedder.embed(bases), embedder.embed([v for _, v in pairs])
    np.savez(work / "aug.npz", mb=mb, mv=mv)
    (work / "aug.json").write_text(json.dumps({"bases": bases, "pairs": pairs}))
    return bases, pairs, mb, mv
