"""Tests of veo_async._journal: the CLI's adapter over an SQLiteStore file, the durable state
machine behind resumable batches."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from veo_async._journal import (
    CLI_BATCH,
    JOURNAL_NAME,
    Journal,
    JournalError,
    JournalState,
    write_manifest,
)
from veo_async.batch import InputTaken
from veo_async.stores import Event, JobState, SQLiteStore


async def _journal(tmp_path: Path, lines: tuple[int, ...] = (1, 2, 3)) -> Journal:
    journal = await Journal.open(tmp_path)
    await journal.match_inputs((line, {"prompt": f"p{line}"}, f"h{line}") for line in lines)
    return journal


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path / JOURNAL_NAME)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.mark.anyio
async def test_new_inputs_are_pending_and_the_file_is_a_wal_full_store(tmp_path: Path) -> None:
    """Inputs start pending; the file is an SQLiteStore (WAL, synchronous=FULL), batch cli."""
    async with await _journal(tmp_path) as journal:
        assert [r.state for r in await journal.rows()] == [JournalState.PENDING] * 3

        def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            return mode, conn.execute("PRAGMA synchronous").fetchone()[0]

        assert await journal.store.read(pragmas) == ("wal", 2)  # 2: FULL
        assert journal.store.batch_id == CLI_BATCH == "cli"
        jobs = await journal.store.jobs()
        assert [j.key for j in jobs] == ["h1", "h2", "h3"]
    assert (tmp_path / JOURNAL_NAME).exists()


@pytest.mark.anyio
async def test_full_lifecycle_survives_reopening(tmp_path: Path) -> None:
    """intent -> id -> completed -> downloaded is stored and read back after reopening."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        assert (await journal.row(1)).state is JournalState.SUBMITTING  # type: ignore[union-attr]
        await journal.record_submitted(1, "gen-1", "queued")
        await journal.record_finished(
            1, generation_id="gen-1", status="completed", video_url="u", credits=5.0, error=None
        )
        await journal.record_downloaded(1, file="0001-p1.mp4", sha256="ab" * 32, size=10)
    async with await Journal.open(tmp_path) as journal:
        row = await journal.row(1)
        assert row is not None
        assert (row.state, row.generation_id, row.video_url, row.credits, row.file) == (
            JournalState.DOWNLOADED,
            "gen-1",
            "u",
            5.0,
            "0001-p1.mp4",
        )
        events = [e[2] for e in await journal.events(1)]
        assert events == ["added", "intent", "submitted", "completed", "downloaded"]


@pytest.mark.anyio
async def test_a_crash_mid_create_becomes_uncertain(tmp_path: Path) -> None:
    """An intent with no id at startup is uncertain (reported, never silently resubmitted)."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(2)
    async with await Journal.open(tmp_path) as journal:
        assert await journal.recover_interrupted() == [2]
        row = await journal.row(2)
        assert row is not None and row.state is JournalState.UNCERTAIN
        assert "may or may not" in (row.error or "")
        assert await journal.recover_interrupted() == []


@pytest.mark.anyio
async def test_not_sent_only_undoes_an_intent(tmp_path: Path) -> None:
    """record_not_sent moves submitting back to pending and leaves other states alone."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        assert await journal.record_not_sent(1) is True
        assert (await journal.row(1)).state is JournalState.PENDING  # type: ignore[union-attr]
        await journal.record_intent(2)
        await journal.record_submitted(2, "g2", "queued")
        assert await journal.record_not_sent(2) is False
        assert (await journal.row(2)).state is JournalState.SUBMITTED  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_failed_refused_and_timeouts(tmp_path: Path) -> None:
    """A failed generation, a refused create and a timeout land in their states."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        await journal.record_finished(
            1, generation_id="g1", status="error", video_url=None, credits=None, error="boom"
        )
        await journal.record_intent(2)
        await journal.record_refused(2, "400 bad")
        await journal.record_intent(3)
        await journal.record_submitted(3, "g3", "queued")
        await journal.record_still_running(3, "g3", "timed out")
        states = {r.line: r.state for r in await journal.rows()}
        assert states == {
            1: JournalState.FAILED,
            2: JournalState.REFUSED,
            3: JournalState.SUBMITTED,
        }


@pytest.mark.anyio
async def test_the_store_transition_rules_apply(tmp_path: Path) -> None:
    """Journal writes go through the store's table: a stale step changes nothing, and an
    intent another process already took is not taken twice (InputTaken: nothing is sent)."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        await journal.record_downloaded(1, file="x.mp4", sha256="0" * 64, size=1)  # stale
        row = await journal.row(1)
        assert row is not None and (row.state, row.file) == (JournalState.SUBMITTED, None)
        with pytest.raises(InputTaken):
            await journal.record_intent(1)  # submitted: never sent again
        other = await SQLiteStore.open(tmp_path / JOURNAL_NAME, batch_id=CLI_BATCH)
        try:
            assert await other.claim_intent("h2", "a library worker")
        finally:
            await other.aclose()
        with pytest.raises(InputTaken):
            await journal.record_intent(2)
        assert (await journal.row(2)).state is JournalState.SUBMITTING  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_inputs_are_matched_by_content_not_by_line(tmp_path: Path) -> None:
    """A line inserted at the top: old inputs keep their key, id and state; the new one is added."""
    async with await _journal(tmp_path) as journal:
        for key in (1, 2, 3):
            await journal.record_intent(key)
            await journal.record_submitted(key, f"g{key}", "queued")
        keys = await journal.match_inputs(
            [
                (1, {"prompt": "new"}, "hnew"),
                (2, {"prompt": "p1"}, "h1"),
                (3, {"prompt": "p2"}, "h2"),
                (4, {"prompt": "p3"}, "h3"),
            ]
        )
        assert keys[1:] == [1, 2, 3] and keys[0] not in (1, 2, 3)
        rows = {r.key: r for r in await journal.rows()}
        assert [(rows[k].line, rows[k].generation_id) for k in (1, 2, 3)] == [
            (2, "g1"),
            (3, "g2"),
            (4, "g3"),
        ]
        assert rows[keys[0]].state is JournalState.PENDING and rows[keys[0]].line == 1


@pytest.mark.anyio
async def test_duplicates_are_distinct_inputs_matched_in_order(tmp_path: Path) -> None:
    """Two identical lines are two inputs (store keys h and h.2); dropping one keeps the first."""
    async with await Journal.open(tmp_path) as journal:
        keys = await journal.match_inputs([(1, {"prompt": "a"}, "ha"), (5, {"prompt": "a"}, "ha")])
        assert len(set(keys)) == 2
        assert [j.key for j in await journal.store.jobs()] == ["ha", "ha.2"]
        await journal.record_intent(keys[0])
        await journal.record_submitted(keys[0], "g-first", "queued")
        await journal.record_intent(keys[1])
        await journal.record_submitted(keys[1], "g-second", "queued")
        again = await journal.match_inputs([(2, {"prompt": "a"}, "ha"), (3, {"prompt": "a"}, "ha")])
        assert again == keys
        alone = await journal.match_inputs([(7, {"prompt": "a"}, "ha")])
        assert alone == keys[:1]
        rows = {r.key: r for r in await journal.rows()}
        assert (rows[keys[0]].line, rows[keys[0]].generation_id) == (7, "g-first")
        assert (rows[keys[1]].line, rows[keys[1]].generation_id) == (None, "g-second")
        assert rows[keys[1]].occurrence == 1
        assert [r.key for r in await journal.rows()] == keys  # current inputs first, then gone


@pytest.mark.anyio
async def test_inputs_that_left_the_file(tmp_path: Path) -> None:
    """A changed line: the never-sent old version is dropped, a submitted one is kept, unlined;
    keys are never reused, even the largest one of a dropped input."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        keys = await journal.match_inputs(
            [(1, {"prompt": "new1"}, "x1"), (2, {"prompt": "new2"}, "x2"), (3, {"p": 3}, "h3")]
        )
        assert keys[2] == 3
        rows = {r.key: r for r in await journal.rows()}
        assert rows[1].line is None and rows[1].generation_id == "g1"
        assert 2 not in rows  # p2 was never sent: nothing to keep
        assert rows[keys[0]].request == {"prompt": "new1"}
        assert rows[keys[0]].state is JournalState.PENDING
        assert len({keys[0], keys[1], 1, 2, 3}) == 5
        dropped = max(keys)
        (fresh,) = await journal.match_inputs([(1, {"prompt": "other"}, "y")])
        assert fresh > dropped  # the dropped inputs' numbers are not given out again
        assert {j.key for j in await journal.store.jobs()} == {"h1", "y"}


@pytest.mark.anyio
async def test_a_schema_1_journal_is_migrated(tmp_path: Path) -> None:
    """A journal of the line-keyed schema 1 opens: rows keep their state, lines become keys."""
    conn = sqlite3.connect(tmp_path / JOURNAL_NAME)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE inputs (
            line INTEGER PRIMARY KEY, request TEXT NOT NULL, request_sha256 TEXT NOT NULL,
            state TEXT NOT NULL, generation_id TEXT, status TEXT, video_url TEXT, credits REAL,
            error TEXT, file TEXT, sha256 TEXT, size INTEGER,
            previous_ids TEXT NOT NULL DEFAULT '[]', intent_at REAL, submitted_at REAL,
            finished_at REAL, downloaded_at REAL, updated_at REAL NOT NULL);
        CREATE INDEX inputs_generation_id ON inputs (generation_id);
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
            line INTEGER, event TEXT NOT NULL, detail TEXT);
        INSERT INTO inputs (line, request, request_sha256, state, generation_id, updated_at)
        VALUES (3, '{"prompt": "a"}', 'ha', 'submitted', 'g3', 0),
               (4, '{"prompt": "a"}', 'ha', 'pending', NULL, 0),
               (6, '{"prompt": "b"}', 'hb', 'submitted', 'g6', 0);
        INSERT INTO events (at, line, event) VALUES (0, 3, 'submitted');
        """
    )
    conn.close()
    async with await Journal.open(tmp_path) as journal:
        rows = await journal.rows()
        assert [(r.key, r.line, r.occurrence, r.generation_id) for r in rows] == [
            (3, 3, 0, "g3"),
            (4, 4, 1, None),
            (6, 6, 0, "g6"),
        ]
        assert [e[1:3] for e in await journal.events(3)] == [(3, "submitted")]
        keys = await journal.match_inputs(
            [(1, {"prompt": "b"}, "hb"), (2, {"prompt": "a"}, "ha"), (3, {"prompt": "a"}, "ha")]
        )
        assert keys == [6, 3, 4]


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("request", "{garbage", "unreadable request"),
        ("state", "exploded", "unreadable state"),
        ("previous_ids", "not json", "unreadable previous_ids"),
        ("size", "'twelve'", "unreadable size"),
    ],
)
@pytest.mark.anyio
async def test_a_corrupt_value_is_a_one_line_journal_error(
    tmp_path: Path, column: str, value: str, words: str
) -> None:
    """Garbage in one column of one row: a one-line JournalError naming the file and column."""
    await (await _journal(tmp_path)).close()
    literal = value if value.startswith("'") else "'" + value + "'"
    _sql(tmp_path, f"UPDATE jobs SET {column} = {literal} WHERE seq = 2")
    async with await Journal.open(tmp_path) as journal:
        with pytest.raises(JournalError) as info:
            await journal.rows()
    message = str(info.value)
    assert words in message and str(tmp_path) in message and "\n" not in message


@pytest.mark.anyio
async def test_a_corrupt_line_is_a_one_line_journal_error(tmp_path: Path) -> None:
    """A line that is not a number: a one-line JournalError naming the file and the column."""
    await (await _journal(tmp_path)).close()
    _sql(tmp_path, "UPDATE job_lines SET line = 'three' WHERE key = 'h2'")
    async with await Journal.open(tmp_path) as journal:
        with pytest.raises(JournalError, match="unreadable line") as info:
            await journal.rows()
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.anyio
async def test_a_corrupt_schema_version_is_a_journal_error(tmp_path: Path) -> None:
    """A non-integer schema version is reported in one line, not a ValueError traceback."""
    await (await Journal.open(tmp_path)).close()
    _sql(
        tmp_path,
        "UPDATE store_meta SET value = 'two' WHERE batch = '' AND name = 'schema_version'",
    )
    with pytest.raises(JournalError, match="schema_version is 'two'") as info:
        await Journal.open(tmp_path)
    assert "damaged" in str(info.value) and str(tmp_path) in str(info.value)
    await (await Journal.open(tmp_path / "again")).close()  # the lock was released


@pytest.mark.anyio
async def test_manifest_write_failure_names_the_disk_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing the manifest: a JournalError saying 'full', old manifest intact."""
    async with await _journal(tmp_path) as journal:
        path = tmp_path / "manifest.jsonl"
        rows = await journal.rows()
        write_manifest(path, rows)
        before = path.read_bytes()

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", full)
            with pytest.raises(JournalError) as info:
                write_manifest(path, rows)
    assert "is full" in str(info.value) and str(tmp_path) in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "manifest" in p.name) == ["manifest.jsonl"]


@pytest.mark.anyio
async def test_reset_for_resubmit_keeps_the_old_id(tmp_path: Path) -> None:
    """Resubmitting keeps earlier generation ids in previous_ids for the audit trail."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        await journal.record_finished(
            1, generation_id="g1", status="error", video_url=None, credits=None, error="x"
        )
        await journal.reset_for_resubmit(1, "--retry-failed")
        row = await journal.row(1)
        assert row is not None
        assert (row.state, row.generation_id, row.previous_ids) == (
            JournalState.PENDING,
            None,
            ["g1"],
        )
        reset = [d for _, _, e, d in await journal.events(1) if e == "reset"]
        assert reset == [{"reason": "--retry-failed"}]


@pytest.mark.anyio
async def test_file_lost_returns_to_completed(tmp_path: Path) -> None:
    """A lost or corrupt download goes back to completed so the next run fetches it."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        await journal.record_finished(
            1, generation_id="g1", status="completed", video_url="u", credits=1, error=None
        )
        await journal.record_downloaded(1, file="f.mp4", sha256="0" * 64, size=3)
        await journal.record_file_lost(1, "missing")
        row = await journal.row(1)
        assert row is not None and row.state is JournalState.COMPLETED and row.file is None


@pytest.mark.anyio
async def test_one_process_at_a_time(tmp_path: Path) -> None:
    """A second open of the same folder is refused while the first holds it."""
    async with await Journal.open(tmp_path):
        with pytest.raises(JournalError, match="another veo-async batch"):
            await Journal.open(tmp_path)
    await (await Journal.open(tmp_path)).close()


@pytest.mark.anyio
async def test_meta_and_newer_schema(tmp_path: Path) -> None:
    """Meta values round-trip; a journal from a newer schema is refused."""
    async with await Journal.open(tmp_path) as journal:
        await journal.set_meta("fingerprint", "abc")
        await journal.set_meta("fingerprint", "def")
        assert await journal.get_meta("fingerprint") == "def"
        assert await journal.get_meta("missing") is None
        assert await journal.store.get_meta("fingerprint") == "def"  # the store's meta
    _sql(tmp_path, "UPDATE store_meta SET value = '999' WHERE name = 'schema_version'")
    with pytest.raises(JournalError, match="newer"):
        await Journal.open(tmp_path)


@pytest.mark.anyio
async def test_corrupt_file_is_a_journal_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a JournalError, not a traceback."""
    (tmp_path / JOURNAL_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open"):
        await Journal.open(tmp_path)


@pytest.mark.anyio
async def test_unknown_line_and_failed_transaction(tmp_path: Path) -> None:
    """Updating an unknown input raises and leaves no event behind."""
    async with await _journal(tmp_path) as journal:
        with pytest.raises(JournalError, match="not in the journal"):
            await journal.record_intent(99)
        assert await journal.events(99) == []


@pytest.mark.anyio
async def test_manifest_has_one_line_per_input(tmp_path: Path) -> None:
    """write_manifest writes every input with the documented keys, atomically."""
    async with await _journal(tmp_path) as journal:
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        path = tmp_path / "manifest.jsonl"
        write_manifest(path, await journal.rows())
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3]
    assert set(lines[0]) >= {
        "line",
        "request",
        "generation_id",
        "status",
        "state",
        "video_url",
        "file",
        "sha256",
        "credits",
        "error",
    }
    assert lines[0]["generation_id"] == "g1"
    assert not list(tmp_path.glob(".manifest*"))


@pytest.mark.anyio
async def test_no_journal_call_touches_sqlite_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every sqlite3 call of a journal's life (open, match, writes, reads, close) runs in a
    worker thread, never on the thread running the event loop."""
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        threads.append(threading.get_ident())
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    journal = await Journal.open(tmp_path)
    real = journal.store._conn

    class Spy:
        def __getattr__(self, name: str) -> Any:
            threads.append(threading.get_ident())
            return getattr(real, name)

    journal.store._conn = Spy()  # type: ignore[assignment]
    async with journal:
        await journal.match_inputs([(1, {"prompt": "p1"}, "h1"), (2, {"prompt": "p2"}, "h2")])
        await journal.record_intent(1)
        await journal.record_submitted(1, "g1", "queued")
        await journal.record_status(1, "generating")
        await journal.record_finished(
            1, generation_id="g1", status="completed", video_url="u", credits=1, error=None
        )
        await journal.set_meta("source", "p.txt")
        assert await journal.get_meta("source") == "p.txt"
        assert len(await journal.rows()) == 2 and await journal.events(1)
        assert await journal.recover_interrupted() == []
    assert len(threads) >= 10
    assert loop_thread not in threads


# --------------------------------------------------------------------------- old journals

#: The tables of the journal before it became an SQLiteStore (schema 2), as that code made them.
OLD_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE inputs (
    key INTEGER PRIMARY KEY AUTOINCREMENT, line INTEGER,
    occurrence INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL,
    request_sha256 TEXT NOT NULL, state TEXT NOT NULL, generation_id TEXT, status TEXT,
    video_url TEXT, credits REAL, error TEXT, file TEXT, sha256 TEXT, size INTEGER,
    previous_ids TEXT NOT NULL DEFAULT '[]', intent_at REAL, submitted_at REAL,
    finished_at REAL, downloaded_at REAL, updated_at REAL NOT NULL);
CREATE INDEX inputs_generation_id ON inputs (generation_id);
CREATE UNIQUE INDEX inputs_identity ON inputs (request_sha256, occurrence);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, key INTEGER,
    event TEXT NOT NULL, detail TEXT);
"""
_SCHEMA_2_ROWS = """
INSERT INTO meta VALUES ('schema_version', '2'), ('fingerprint', 'fp'), ('source', 'p.txt'),
    ('target', 'http://x universal');
INSERT INTO inputs (key, line, occurrence, request, request_sha256, state, generation_id,
    video_url, file, sha256, size, previous_ids, intent_at, submitted_at, updated_at)
VALUES
    (1, 2, 0, '{"prompt": "a"}', 'ha', 'downloaded', 'g1', 'u1', '0001-a.mp4', 'ff', 5,
     '[]', 10, 11, 12),
    (2, 3, 1, '{"prompt": "a"}', 'ha', 'submitted', 'g2', NULL, NULL, NULL, NULL,
     '["g0"]', 10, 11, 12),
    (3, 4, 0, '{"prompt": "b"}', 'hb', 'submitting', NULL, NULL, NULL, NULL, NULL,
     '[]', 10, NULL, 12),
    (4, NULL, 0, '{"prompt": "c"}', 'hc', 'failed', 'g4', NULL, NULL, NULL, NULL,
     '[]', 10, 11, 12),
    (5, 5, 0, '{"prompt": "d"}', 'hd', 'pending', NULL, NULL, NULL, NULL, NULL,
     '[]', NULL, NULL, 12);
INSERT INTO events (at, key, event, detail) VALUES
    (10, 1, 'intent', NULL), (11, 1, 'submitted', '{"generation_id": "g1"}'),
    (13, 1, 'completed', '{"polls": 3}'), (10, 3, 'intent', NULL), (9, NULL, 'note', NULL);
"""


def _old_journal(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / JOURNAL_NAME
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_TABLES + _SCHEMA_2_ROWS)
    conn.close()
    return path


async def _check_migrated(folder: Path) -> None:
    async with await Journal.open(folder) as journal:
        rows = await journal.rows()
        assert [(r.key, r.line, r.occurrence, r.state.value, r.generation_id) for r in rows] == [
            (1, 2, 0, "downloaded", "g1"),
            (2, 3, 1, "submitted", "g2"),
            (3, 4, 0, "submitting", None),
            (5, 5, 0, "pending", None),
            (4, None, 0, "failed", "g4"),
        ]
        assert rows[1].previous_ids == ["g0"] and rows[0].file == "0001-a.mp4"
        assert [(e[1], e[2], e[3]) for e in await journal.events(1)] == [
            (1, "intent", None),
            (1, "submitted", {"generation_id": "g1"}),
            (1, "completed", {"polls": 3}),
        ]
        assert (await journal.get_meta("source"), await journal.get_meta("target")) == (
            "p.txt",
            "http://x universal",
        )
        jobs = {j.key: j for j in await journal.store.jobs()}
        assert set(jobs) == {"ha", "ha.2", "hb", "hc", "hd"}  # the library's input keys
        assert jobs["ha"].attempts == 1 and jobs["hb"].state is JobState.SUBMITTING
        # The old tables are gone; the store's own operations work on the migrated jobs.
        assert await journal.recover_interrupted() == [3]
        assert await journal.store.transition("ha.2", Event.STILL_RUNNING, generation_id="g2")

        def tables(conn: sqlite3.Connection) -> set[str]:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}

        names = await journal.store.read(tables)
        assert not {"inputs", "meta", "legacy_events", "legacy_meta"} & names


@pytest.mark.anyio
async def test_a_schema_2_journal_is_migrated_into_the_store(tmp_path: Path) -> None:
    """A journal written by the previous code (schema 2) opens as an SQLiteStore: every input
    keeps its number, line, state, ids, file, events and meta, keyed like the library."""
    _old_journal(tmp_path)
    await _check_migrated(tmp_path)
    async with await Journal.open(tmp_path) as journal:  # opening again migrates nothing
        rows = {r.key: r for r in await journal.rows()}
        assert sorted(rows) == [1, 2, 3, 4, 5] and rows[3].state is JournalState.UNCERTAIN


_KILL_MID_MIGRATION = """
import os, signal, sqlite3, sys
from veo_async.stores._legacy import migrate_legacy
from veo_async.stores._sqlite import _SCHEMA
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
# Count the SQLite VM steps of a whole migration on a copy, then die after a share of them.
copy = sqlite3.connect(":memory:", isolation_level=None)
conn.backup(copy)
steps = [0]
def count():
    steps[0] += 1
copy.set_progress_handler(count, 1)
migrate_legacy(copy, _SCHEMA)
kill_at = max(1, int(steps[0] * float(sys.argv[2])))
seen = [0]
def maybe_kill():
    seen[0] += 1
    if seen[0] >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
conn.set_progress_handler(maybe_kill, 1)
migrate_legacy(conn, _SCHEMA)
print("finished", steps[0])
"""


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.01, 0.25, 0.5, 0.75, 0.9])
@pytest.mark.anyio
async def test_a_migration_killed_at_any_moment_leaves_the_old_journal_usable(
    tmp_path: Path, share: float
) -> None:
    """SIGKILL at any point of the migration (1% of its SQLite steps in, ... 90%): the file
    is still the old journal, intact, and the next open migrates it completely."""
    path = _old_journal(tmp_path)
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", _KILL_MID_MIGRATION, str(path), str(share)], check=False
        )
    assert done.returncode == -signal.SIGKILL, done.stderr  # it died mid-migration
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"inputs", "meta", "events"} <= names and "jobs" not in names
        assert conn.execute("SELECT COUNT(*) FROM inputs").fetchone()[0] == 5
    finally:
        conn.close()
    await _check_migrated(tmp_path)


@pytest.mark.anyio
async def test_an_old_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """An old-layout journal claiming a schema after 2 is refused and left untouched."""
    path = _old_journal(tmp_path)
    _sql(tmp_path, "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(JournalError, match="newer"):
        await Journal.open(tmp_path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM inputs").fetchone()[0] == 5
    conn.close()


def test_migration_statements_never_hold_a_semicolon_in_a_string() -> None:
    """The migration splits its script on ';': no statement may carry one inside."""
    from veo_async.stores import _legacy
    from veo_async.stores._sqlite import _SCHEMA

    for script in (_legacy._V1_TO_V2, _legacy._V2_TO_STORE, _SCHEMA):
        for statement in _legacy._statements(script):
            assert sqlite3.complete_statement(statement + ";"), statement


def test_the_report_reads_an_old_journal_without_migrating_the_folder(tmp_path: Path) -> None:
    """`veo-async report` on a folder an older version made: the jobs are read (migrated in a
    copy in memory), and the folder's file is left in its old layout, untouched."""
    from veo_async.report import load_batch

    path = _old_journal(tmp_path)
    before = path.read_bytes()
    report = load_batch(tmp_path)
    assert report.origin == "journal" and report.source == "p.txt"
    assert sorted((j.line, j.state) for j in report.jobs if j.line is not None) == [
        (2, "downloaded"),
        (3, "submitted"),
        (4, "submitting"),
        (5, "pending"),
    ]
    assert path.read_bytes() == before
