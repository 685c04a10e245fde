"""The CLI journal's layouts before it became an :class:`~veo_async.stores.SQLiteStore` file.

Up to veo-async 0.x, ``veo-async batch`` kept its own tables in ``OUT/.veo-async-journal.sqlite3``
(``meta``, ``inputs`` keyed by an integer, ``events``; schema 1 keyed inputs by line number,
schema 2 by request hash and occurrence). The file is now an SQLiteStore holding one batch,
:data:`CLI_BATCH`. :func:`migrate_legacy` rewrites an old file into the store's tables in **one
transaction**: a process killed at any moment of it (SIGKILL included) leaves the old layout
exactly as it was, and the next open migrates it again from scratch.

What moves where: each input becomes a job keyed like :func:`~veo_async.stores.input_keys`
(its ``request_sha256``, plus ``.n`` for the n-th copy of one request), its old integer key
becomes the job's ``seq``, its line goes to ``job_lines``, its events keep their order and
names, and ``meta`` (fingerprint, source, target) becomes the batch's ``store_meta``. Every
job also gets an open work item, so the library's ``client.batch(..., store=...)`` can take the
batch over.
"""

from __future__ import annotations

import sqlite3

__all__ = ["CLI_BATCH", "LegacyJournalError", "is_legacy", "migrate_legacy"]

#: The batch id of the CLI journal inside its store file (``veo-async status --store
#: sqlite:///OUT/.veo-async-journal.sqlite3 --batch-id cli``).
CLI_BATCH = "cli"

#: Newest layout of the old journal.
_LEGACY_VERSION = 2

#: The old journal's tables (schema 2).
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    key            INTEGER PRIMARY KEY AUTOINCREMENT,
    line           INTEGER,
    occurrence     INTEGER NOT NULL DEFAULT 0,
    request        TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    state          TEXT NOT NULL,
    generation_id  TEXT,
    status         TEXT,
    video_url      TEXT,
    credits        REAL,
    error          TEXT,
    file           TEXT,
    sha256         TEXT,
    size           INTEGER,
    previous_ids   TEXT NOT NULL DEFAULT '[]',
    intent_at      REAL,
    submitted_at   REAL,
    finished_at    REAL,
    downloaded_at  REAL,
    updated_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inputs_generation_id ON inputs (generation_id);
CREATE UNIQUE INDEX IF NOT EXISTS inputs_identity ON inputs (request_sha256, occurrence);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    key    INTEGER,
    event  TEXT NOT NULL,
    detail TEXT
);
"""

#: Schema 1 keyed inputs by line number; its rows keep their line as their key.
_V1_TO_V2 = (
    """
DROP INDEX IF EXISTS inputs_generation_id;
ALTER TABLE inputs RENAME TO inputs_v1;
ALTER TABLE events RENAME COLUMN line TO key;
"""
    + _SCHEMA_V2
    + """
INSERT INTO inputs (key, line, occurrence, request, request_sha256, state, generation_id, status,
    video_url, credits, error, file, sha256, size, previous_ids, intent_at, submitted_at,
    finished_at, downloaded_at, updated_at)
SELECT line, line,
    (SELECT COUNT(*) FROM inputs_v1 AS b
     WHERE b.request_sha256 = a.request_sha256 AND b.line < a.line),
    request, request_sha256, state, generation_id, status, video_url, credits, error, file,
    sha256, size, previous_ids, intent_at, submitted_at, finished_at, downloaded_at, updated_at
FROM inputs_v1 AS a;
DROP TABLE inputs_v1;
"""
)

#: The store key of an old input: request hash, ``.n`` for the n-th copy (occurrence n-1).
_KEY = "i.request_sha256 || CASE WHEN i.occurrence = 0 THEN '' ELSE '.' || (i.occurrence + 1) END"

#: Schema 2 -> the store's tables (created just before, by the store's own schema).
_V2_TO_STORE = f"""
INSERT INTO jobs (batch, key, seq, request, state, generation_id, status, video_url, credits,
    error, file, sha256, size, attempts, previous_ids, intent_at, submitted_at, finished_at,
    downloaded_at, updated_at)
SELECT '{CLI_BATCH}', {_KEY}, i.key, i.request, i.state, i.generation_id, i.status, i.video_url,
    i.credits, i.error, i.file, i.sha256, i.size,
    (SELECT COUNT(*) FROM legacy_events AS e WHERE e.key = i.key AND e.event = 'intent'),
    i.previous_ids, i.intent_at, i.submitted_at, i.finished_at, i.downloaded_at, i.updated_at
FROM inputs AS i;
INSERT INTO job_lines (batch, key, line)
SELECT '{CLI_BATCH}', {_KEY}, i.line FROM inputs AS i WHERE i.line IS NOT NULL;
INSERT INTO work (batch, key, kind)
SELECT '{CLI_BATCH}', {_KEY}, 'submit' FROM inputs AS i ORDER BY i.key;
INSERT INTO events (batch, at, key, event, detail)
SELECT '{CLI_BATCH}', e.at, CASE WHEN i.key IS NULL THEN NULL ELSE {_KEY} END, e.event, e.detail
FROM legacy_events AS e LEFT JOIN inputs AS i ON i.key = e.key ORDER BY e.id;
INSERT INTO store_meta (batch, name, value)
SELECT '{CLI_BATCH}', key, value FROM legacy_meta WHERE key != 'schema_version';
DROP TABLE inputs;
DROP TABLE legacy_events;
DROP TABLE legacy_meta;
"""


class LegacyJournalError(ValueError):
    """An old journal that cannot be migrated (a newer or damaged schema version)."""


def is_legacy(conn: sqlite3.Connection) -> bool:
    """Whether the database holds the old journal's tables (an ``inputs`` table)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inputs'"
    ).fetchone()
    return row is not None


def _legacy_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: the oldest files
        return 1
    raw = None if row is None else row[0]
    try:
        version = 1 if raw is None else int(raw)
    except (TypeError, ValueError):
        raise LegacyJournalError(f"is damaged: schema_version is {raw!r}, not a number") from None
    if version > _LEGACY_VERSION:
        raise LegacyJournalError(f"was written by a newer veo-async (schema {version}); upgrade")
    return version


def migrate_legacy(conn: sqlite3.Connection, store_schema: str) -> bool:
    """Rewrite an old journal into the store's tables, in one transaction; whether it did.

    ``conn`` must be in autocommit mode (``isolation_level=None``); ``store_schema`` is the
    store's ``CREATE ... IF NOT EXISTS`` script. Nothing is changed when the file is not an
    old journal; on any failure the transaction is rolled back (the old file stays usable).
    """
    if not is_legacy(conn):
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not is_legacy(conn):  # another process migrated it while this one waited
            conn.execute("ROLLBACK")
            return False
        if _legacy_version(conn) == 1:
            for statement in _statements(_V1_TO_V2):
                conn.execute(statement)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("ALTER TABLE events RENAME TO legacy_events")
        conn.execute("ALTER TABLE meta RENAME TO legacy_meta")
        for statement in _statements(store_schema + _V2_TO_STORE):
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _statements(script: str) -> list[str]:
    """Split a script of simple statements (no triggers, no ``;`` inside strings)."""
    return [s.strip() for s in script.split(";") if s.strip()]
