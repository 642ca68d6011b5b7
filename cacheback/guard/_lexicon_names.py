"""Words for what a question is about or asks for: languages, answer formats and styles,
places and products, and the spellings that name the same thing. The lists themselves
are in ``data/`` (see :mod:`._wordlists`)."""

from __future__ import annotations

from ._wordlists import mapping, pairs, words

_NATURAL_LANGUAGES = words("natural_languages")
# Programming languages; the ambiguous ones (go, c, r, swift, rust ...) need a capital.
_PROGRAMMING_LANGUAGES = mapping("programming_languages")
_CAPITALISED_LANGUAGES = mapping("capitalised_languages")

_FORMATS = mapping("formats")
_SHAPES = mapping("shapes")
_SHAPE_LEADS = words("shape_leads")
_SHAPE_FILLERS = words("shape_fillers")
_GENERATIVE_VERBS = words("generative_verbs")
_STYLES = mapping("styles")
_OPPOSITE_STYLES = frozenset(pairs("opposite_styles"))
_RANKINGS = mapping("rankings")

_GAZETTEER = words("gazetteer")
_COMMON_WORD_NAMES = words("common_word_names")
_COMMON_ACRONYMS = words("common_acronyms")
_ALIASES = mapping("aliases")
_DEMONYMS = mapping("demonyms")
