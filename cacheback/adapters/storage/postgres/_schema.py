"""The schema, as numbered migrations applied by the store itself on open.

Several replicas may start at once: every migration runs in one transaction holding a
transaction-scoped advisory lock, and each version is recorded in ``schema_migrations``, so
exactly one process applies it and the others see it done.

Table layout (one PostgreSQL schema per cache, ``cacheback`` unless the URL says otherwise):

* ``entries``: the answers; ``vector`` NULL until the write path attaches it (exact-only).
  An HNSW index (cosine ops) serves scoped top-k search.
* ``entry_access``: last access and hit count, apart from ``entries`` so the update every
  hit makes never writes a new version of a row carrying a vector (which would re-insert it
  into the HNSW index).
* ``negatives``, ``counters``, ``meta`` (dim, the live entry count kept by triggers).

Deletions (removal, replacement, eviction, expiry sweep, clear) NOTIFY the store's channel
with the deleted ids, delivered at commit to every replica listening; a blocklist addition
notifies "*" (forget everything remembered), and any blocklist change notifies
``NEGATIVES_CHANGED`` (each replica reloads its in-memory copy of the blocklist).
"""

from __future__ import annotations

import re
from typing import Any

from ....core._errors import ConfigError

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_LOCK_KEY = 0x63616368_6562  # one advisory lock for every cacheback migration on the server

#: Scopes with fewer searchable rows are ranked exactly, larger ones through HNSW.
EXACT_SCOPE_ROWS = 1000

#: Largest id list one notification carries; bigger deletions say "*" (drop everything).
NOTIFY_MAX_IDS = 400

#: The notification every change to the blocklist sends (never an id list, never "*").
NEGATIVES_CHANGED = "negatives"


def check_schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name):
        raise ConfigError(f"PostgreSQL schema name {name!r}: use lower-case letters, digits and _")
    return name


def channel(schema: str) -> str:
    return f"cacheback_{schema}"


def _v1(s: str, dim: int) -> str:
    ch = channel(s)
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.entries (
    id bigserial PRIMARY KEY,
    scope text NOT NULL,
    query_hash text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    vector vector({dim}),
    query text NOT NULL,
    answer text NOT NULL,
    payload bytea,
    metadata text NOT NULL DEFAULT '{{}}',
    UNIQUE (scope, query_hash)
);
CREATE INDEX entries_expires_at ON {s}.entries (expires_at);
CREATE INDEX entries_unindexed ON {s}.entries (id) WHERE vector IS NULL;
CREATE INDEX entries_vector ON {s}.entries USING hnsw (vector vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE TABLE {s}.entry_access (
    id bigint PRIMARY KEY REFERENCES {s}.entries (id) ON DELETE CASCADE,
    last_access double precision NOT NULL,
    hits integer NOT NULL DEFAULT 0
);
CREATE INDEX entry_access_lru ON {s}.entry_access (last_access, id);
CREATE TABLE {s}.negatives (
    id bigserial PRIMARY KEY,
    query text NOT NULL,
    vector vector({dim}) NOT NULL,
    reason text NOT NULL,
    category text NOT NULL,
    severity integer NOT NULL,
    false_positives integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    metadata text NOT NULL DEFAULT '{{}}'
);
CREATE TABLE {s}.counters (name text PRIMARY KEY, value double precision NOT NULL);
CREATE TABLE {s}.meta (key text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO {s}.meta (key, value) VALUES ('dim', {dim}), ('entries', 0);

CREATE FUNCTION {s}.entries_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {s}.meta SET value = value + (SELECT count(*) FROM new_rows) WHERE key = 'entries';
    RETURN NULL;
END $$;
CREATE TRIGGER entries_added AFTER INSERT ON {s}.entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.entries_added();

CREATE FUNCTION {s}.entries_gone() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    ids text;
BEGIN
    SELECT count(*) INTO n FROM old_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE {s}.meta SET value = value - n WHERE key = 'entries';
    IF n > {NOTIFY_MAX_IDS} THEN
        ids := '*';
    ELSE
        SELECT string_agg(id::text, ',') INTO ids FROM old_rows;
    END IF;
    PERFORM pg_notify('{ch}', ids);
    RETURN NULL;
END $$;
CREATE TRIGGER entries_gone AFTER DELETE ON {s}.entries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.entries_gone();
"""


def _v2(s: str) -> str:
    """A blocklist addition tells every replica to forget its remembered answers at once
    (they were not checked against the new entry), as a deletion of everything would."""
    return f"""
CREATE FUNCTION {s}.negatives_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel(s)}', '*');
    RETURN NULL;
END $$;
CREATE TRIGGER negatives_added AFTER INSERT ON {s}.negatives
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.negatives_added();
"""


def _v3(s: str) -> str:
    """Scoped search as one function that picks its own plan.

    A scope with fewer than ``EXACT_SCOPE_ROWS`` searchable rows (counted through a partial
    index) is ranked exactly; a larger one goes through the HNSW index. Left to the planner,
    a generic plan or stale statistics can sort a large scope in full, or send a tiny one
    through the graph (where the iterative scan walks up to hnsw.max_scan_tuples rows to
    find its few members); the function's own settings leave each branch one plan.
    """
    n = EXACT_SCOPE_ROWS
    return f"""
CREATE INDEX entries_vector_scope ON {s}.entries (scope) WHERE vector IS NOT NULL;
CREATE FUNCTION {s}.search(q vector, want text, at double precision, k integer, known_big boolean)
RETURNS TABLE (id bigint, distance double precision, big boolean)
LANGUAGE plpgsql STABLE ROWS 10
SET search_path = {s}, public
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
DECLARE
    n integer;
BEGIN
    IF known_big THEN  -- the caller saw this scope large before: no need to count again
        n := {n};
    ELSE
        SELECT count(*) INTO n FROM (
            SELECT 1 FROM {s}.entries AS e WHERE e.scope = want AND e.vector IS NOT NULL LIMIT {n}
        ) AS probe;
    END IF;
    IF n < {n} THEN
        -- "+ 0": an ordering the HNSW index cannot serve, so an exact sort of the scope
        RETURN QUERY SELECT e.id, e.vector <=> q, false FROM {s}.entries AS e
            WHERE e.scope = want AND e.expires_at > at AND e.vector IS NOT NULL
            ORDER BY (e.vector <=> q) + 0 LIMIT k;
    ELSE
        RETURN QUERY SELECT e.id, e.vector <=> q, true FROM {s}.entries AS e
            WHERE e.scope = want AND e.expires_at > at AND e.vector IS NOT NULL
            ORDER BY e.vector <=> q LIMIT k;
    END IF;
END $$;
"""


def _v4(s: str) -> str:
    """Every blocklist change (addition, removal, a false-positive report) tells the
    replicas to reload their in-memory copy, which the negative gate searches without a
    round trip."""
    return f"""
CREATE FUNCTION {s}.negatives_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel(s)}', '{NEGATIVES_CHANGED}');
    RETURN NULL;
END $$;
CREATE TRIGGER negatives_changed AFTER INSERT OR UPDATE OR DELETE ON {s}.negatives
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.negatives_changed();
"""


def _v5(s: str) -> str:
    """The entry's own verbatim threshold, learned from feedback (NULL: none). In
    ``entry_access``, like the hit counts: setting it never rewrites a row that carries a
    vector."""
    return f"ALTER TABLE {s}.entry_access ADD COLUMN hit_threshold double precision;"


def _v6(s: str) -> str:
    """The search function again, with the HNSW breadth as an argument (``ef``; 0 keeps the
    session's), so the store can widen it as the table grows. The five-argument version
    stays for replicas still running the previous release."""
    n = EXACT_SCOPE_ROWS
    return f"""
CREATE FUNCTION {s}.search(q vector, want text, at double precision, k integer, known_big boolean,
    ef integer)
RETURNS TABLE (id bigint, distance double precision, big boolean)
LANGUAGE plpgsql STABLE ROWS 10
SET search_path = {s}, public
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
DECLARE
    n integer;
BEGIN
    IF known_big THEN
        n := {n};
    ELSE
        SELECT count(*) INTO n FROM (
            SELECT 1 FROM {s}.entries AS e WHERE e.scope = want AND e.vector IS NOT NULL LIMIT {n}
        ) AS probe;
    END IF;
    IF n < {n} THEN
        RETURN QUERY SELECT e.id, e.vector <=> q, false FROM {s}.entries AS e
            WHERE e.scope = want AND e.expires_at > at AND e.vector IS NOT NULL
            ORDER BY (e.vector <=> q) + 0 LIMIT k;
    ELSE
        IF ef > 0 THEN  -- local to this call: the function's SET clauses restore it on exit
            PERFORM set_config('hnsw.ef_search', ef::text, true);
        END IF;
        RETURN QUERY SELECT e.id, e.vector <=> q, true FROM {s}.entries AS e
            WHERE e.scope = want AND e.expires_at > at AND e.vector IS NOT NULL
            ORDER BY e.vector <=> q LIMIT k;
    END IF;
END $$;
"""


def migrations(schema: str, dim: int) -> list[tuple[int, str]]:
    """(version, SQL) in order. Append new versions; never edit an applied one. Each
    version missing from a schema is applied, whatever its place: version 4 was released
    after version 5, so a schema at 1, 2, 3 and 5 gets 4 next."""
    return [
        (1, _v1(schema, dim)),
        (2, _v2(schema)),
        (3, _v3(schema)),
        (4, _v4(schema)),
        (5, _v5(schema)),
        (6, _v6(schema)),
    ]


async def migrate(conn: Any, schema: str, dim: int) -> int:
    """Bring ``schema`` to the newest version; returns the vector dimension it holds.

    ``conn`` is an asyncpg connection. Raises ConfigError when the schema was made for
    another dimension or by a newer cacheback.
    """
    steps = migrations(schema, dim)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {int(r[0]) for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")}
        newest = steps[-1][0]
        if done and max(done) > newest:
            raise ConfigError(
                f"PostgreSQL schema {schema!r} is at version {max(done)}; this cacheback knows "
                f"{newest} (upgrade cacheback)"
            )
        for version, sql in steps:
            if version not in done:
                await conn.execute(sql)
                await conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES ($1)", version)
        recorded = int(await conn.fetchval(f"SELECT value FROM {schema}.meta WHERE key = 'dim'"))
    if recorded != dim:
        raise ConfigError(
            f"PostgreSQL schema {schema!r} holds {recorded}-dimensional vectors but this embedder "
            f"makes {dim}; use another schema (?schema=... in the store URL)"
        )
    return recorded
