"""Settings grouped into sections: built from flat names and variables, each section
checking its own values, changed with ``with_``, and unknown names refused."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from pathlib import Path
from typing import Any

import pytest

from cacheback import (
    AsyncSemanticCache,
    ConfigError,
    EmbeddingSettings,
    MatchingSettings,
    PipelineSettings,
    Settings,
    StorageSettings,
    SynthesisSettings,
)
from cacheback.core._settings import SECTION_OF, FlatSettings
from cacheback.core._settings_sections import SECTIONS


def test_flat_keywords_land_in_their_sections(tmp_path: Path) -> None:
    s = Settings(
        cache_dir=tmp_path,
        similarity_threshold=0.9,
        synthesis_mode="auto",
        synthesis_top_k=3,
        embed_max_batch=8,
        persist_batch=7,
        log_content=True,
    )
    assert s.storage == StorageSettings(cache_dir=tmp_path)
    assert s.matching == MatchingSettings(similarity_threshold=0.9)
    assert s.synthesis == SynthesisSettings(synthesis_mode="auto", synthesis_top_k=3)
    assert s.embedding == EmbeddingSettings(embed_max_batch=8)
    assert s.pipeline == PipelineSettings(persist_batch=7)
    assert s.observability.log_content is True
    # the flat read access stays: every name reads its section's field
    for name in Settings.names():
        assert getattr(s, name) == getattr(getattr(s, SECTION_OF[name]), name), name
    assert s.similarity_threshold == 0.9 and s.persist_batch == 7 and s.top_k == 5


def test_every_field_has_one_flat_name_one_section_and_one_type() -> None:
    names = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)), "a flat name in two sections"
    assert list(Settings.names()) == names
    assert not set(names) & set(SECTIONS), "a setting named like a section"
    hints = typing.get_type_hints(FlatSettings)
    assert list(hints) == names, "FlatSettings lists every field, in section order"
    for cls in SECTIONS.values():
        for name, hint in typing.get_type_hints(cls).items():
            assert hints[name] == hint, name
    for name in names:  # each has its flat reader on the class
        assert name in vars(Settings), name


def test_the_environment_builds_the_sections(tmp_path: Path) -> None:
    env = {
        "CACHEBACK_CACHE_DIR": str(tmp_path),
        "CACHEBACK_TOP_K": "7",
        "CACHEBACK_SIMILARITY_THRESHOLD": "0.88",
        "CACHEBACK_SYNTHESIS_STORE": "yes",
        "CACHEBACK_TTL": "60",
        "CACHEBACK_EMBED_MAX_WAIT_MS": "1.5",
        "CACHEBACK_MODEL_DIR": "~/models/minilm",
        "CACHEBACK_SWEEP_INTERVAL_S": "30",
    }
    s = Settings.from_env(env)
    assert s.storage.cache_dir == tmp_path and s.storage.cache_ttl == 60.0
    assert s.matching.top_k == 7 and s.matching.similarity_threshold == 0.88
    assert s.synthesis.synthesis_store is True
    assert s.embedding.embed_max_wait_ms == 1.5
    assert s.embedding.model_dir == Path("~/models/minilm").expanduser()
    assert s.pipeline.sweep_interval_s == 30.0
    # explicit arguments win over the environment; None means unset
    s = Settings.from_env(env, top_k=3, similarity_threshold=None)
    assert s.matching.top_k == 3 and s.matching.similarity_threshold == 0.88
    # a whole section replaces the variables of its fields; flat arguments still apply on top
    s = Settings.from_env(env, matching=MatchingSettings(guard_enabled=False), top_k=4)
    assert s.matching == MatchingSettings(guard_enabled=False, top_k=4)
    assert s.storage.cache_ttl == 60.0  # other sections keep their variables


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"similarity_threshold": 1.5}, "settings matching: similarity_threshold must be in (0, 1], not 1.5"),
        ({"top_k": 0}, "settings matching: top_k must be at least 1, not 0"),
        ({"negative_threshold": 0.0}, "settings matching: negative_threshold must be in (0, 1], not 0.0"),
        ({"synthesis_mode": "sometimes"}, "settings synthesis: synthesis_mode must be one of off, auto"),
        ({"synthesis_timeout_s": 0}, "settings synthesis: synthesis_timeout_s must be positive, not 0"),
        ({"cache_ttl": -1}, "settings storage: cache_ttl must be positive, not -1"),
        ({"store_url": "mysql://db"}, "settings storage: store_url must be a postgresql:// URL"),
        ({"index": "faiss"}, "settings storage: index must be one of auto, hnsw, numpy, not 'faiss'"),
        ({"embed_device": "tpu"}, "settings embedding: embed_device must be 'cpu', 'cuda', 'cuda:N'"),
        ({"embed_threads": 0}, "settings embedding: embed_threads must be at least 1, not 0"),
        ({"media_similarity_threshold": 2}, "settings media: media_similarity_threshold must be in (0, 1]"),
        ({"queue_size": 0}, "settings pipeline: queue_size must be at least 1, not 0"),
        ({"sweep_interval_s": 0}, "settings pipeline: sweep_interval_s must be positive, not 0"),
    ],
)
def test_each_section_refuses_its_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as flat:
        Settings(**values)
    assert str(flat.value).startswith(message)
    section = SECTION_OF[next(iter(values))]
    with pytest.raises(ConfigError) as direct:  # the section alone checks the same
        SECTIONS[section](**values)
    assert str(direct.value) == str(flat.value)
    with pytest.raises(ConfigError) as changed:  # and so does a change
        Settings().with_(**values)
    assert str(changed.value) == str(flat.value)


def test_a_bad_variable_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"CACHEBACK_TOP_K='many' is not a valid int"):
        Settings.from_env({"CACHEBACK_TOP_K": "many"})
    with pytest.raises(ConfigError, match="settings matching: similarity_threshold must be in"):
        Settings.from_env({"CACHEBACK_SIMILARITY_THRESHOLD": "0"})


def test_with_changes_one_field_of_one_section(tmp_path: Path) -> None:
    s = Settings(cache_dir=tmp_path, synthesis_mode="auto")
    t = s.with_(top_k=9)
    assert t.matching.top_k == 9 and t.top_k == 9
    assert s.matching.top_k == 5  # frozen: the original is untouched
    assert t.matching.similarity_threshold == s.matching.similarity_threshold
    for section in SECTIONS.keys() - {"matching"}:
        assert getattr(t, section) is getattr(s, section), section
    assert t.synthesis.synthesis_mode == "auto"
    # a whole section, and a flat name on top of it
    u = s.with_(matching=MatchingSettings(top_k=2), guard_enabled=False)
    assert u.matching == MatchingSettings(top_k=2, guard_enabled=False)
    # dataclasses.replace works the same way
    assert dataclasses.replace(s, top_k=4).matching.top_k == 4  # type: ignore[call-arg]


def test_settings_and_sections_are_frozen_values(tmp_path: Path) -> None:
    s = Settings(cache_dir=tmp_path, top_k=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.matching.top_k = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.matching = MatchingSettings()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"use settings.with_\(top_k=...\)"):
        s.top_k = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del s.storage
    assert s == Settings(cache_dir=tmp_path, top_k=3) and s != s.with_(top_k=4)
    assert pickle.loads(pickle.dumps(s)) == s
    assert "sk-secret" not in repr(s.with_(synthesis_api_key="sk-secret"))


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^unknown settings: similarity$"):
        Settings(similarity=0.9)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"^unknown settings: bogus, nope$"):
        Settings().with_(nope=1, bogus=2)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"^unknown settings: no_such_setting$"):
        Settings.from_env({}, no_such_setting=1)
    with pytest.raises(ConfigError, match="matching must be a MatchingSettings, not SynthesisSettings"):
        Settings(matching=SynthesisSettings())  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # a section knows only its own fields
        MatchingSettings(synthesis_mode="auto")  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_the_engine_reads_its_matching_section_live(cache_dir: Path, embedder: Any) -> None:
    """A new ``engine.settings`` reaches the tier router at its next batch."""
    strict_cache = AsyncSemanticCache(cache_dir=cache_dir, embedder=embedder, similarity_threshold=0.999)
    async with strict_cache as cache:
        await cache.populate("How do I reverse a list in Python?", "Use reversed() or slicing.")
        strict = await cache.lookup_detailed("How can I reverse a list in Python?")
        assert strict.tier == "miss" and strict.similarity is not None and strict.similarity < 0.999
        engine = cache.engine
        engine.settings = engine.settings.with_(similarity_threshold=0.9)
        assert engine.settings.matching.similarity_threshold == 0.9
        loose = await cache.lookup_detailed("How can I reverse a list in Python?")
        assert loose.tier == "verbatim" and loose.answer == "Use reversed() or slicing."
