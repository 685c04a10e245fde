"""Tests of veo_async._journal: the durable state machine behind resumable batches."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest

from veo_async._journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    JournalState,
    write_manifest,
)


def _journal(tmp_path: Path, lines: tuple[int, ...] = (1, 2, 3)) -> Journal:
    journal = Journal.open(tmp_path)
    journal.match_inputs((line, {"prompt": f"p{line}"}, f"h{line}") for line in lines)
    return journal


def test_new_inputs_are_pending_and_the_file_is_wal_full(tmp_path: Path) -> None:
    """Inputs start pending; the database is in WAL mode with synchronous=FULL."""
    with _journal(tmp_path) as journal:
        assert [r.state for r in journal.rows()] == [JournalState.PENDING] * 3
        conn = journal._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (tmp_path / JOURNAL_NAME).exists()


def test_full_lifecycle_survives_reopening(tmp_path: Path) -> None:
    """intent -> id -> completed -> downloaded is stored and read back after reopening."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        assert journal.row(1).state is JournalState.SUBMITTING  # type: ignore[union-attr]
        journal.record_submitted(1, "gen-1", "queued")
        journal.record_finished(
            1, generation_id="gen-1", status="completed", video_url="u", credits=5.0, error=None
        )
        journal.record_downloaded(1, file="0001-p1.mp4", sha256="ab" * 32, size=10)
    with Journal.open(tmp_path) as journal:
        row = journal.row(1)
        assert row is not None
        assert (row.state, row.generation_id, row.video_url, row.credits, row.file) == (
            JournalState.DOWNLOADED,
            "gen-1",
            "u",
            5.0,
            "0001-p1.mp4",
        )
        events = [e[2] for e in journal.events(1)]
        assert events == ["added", "intent", "submitted", "completed", "downloaded"]


def test_a_crash_mid_create_becomes_uncertain(tmp_path: Path) -> None:
    """An intent with no id at startup is uncertain (reported, never silently resubmitted)."""
    with _journal(tmp_path) as journal:
        journal.record_intent(2)
    with Journal.open(tmp_path) as journal:
        assert journal.recover_interrupted() == [2]
        row = journal.row(2)
        assert row is not None and row.state is JournalState.UNCERTAIN
        assert "may or may not" in (row.error or "")
        assert journal.recover_interrupted() == []


def test_not_sent_only_undoes_an_intent(tmp_path: Path) -> None:
    """record_not_sent moves submitting back to pending and leaves other states alone."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        assert journal.record_not_sent(1) is True
        assert journal.row(1).state is JournalState.PENDING  # type: ignore[union-attr]
        journal.record_intent(2)
        journal.record_submitted(2, "g2", "queued")
        assert journal.record_not_sent(2) is False
        assert journal.row(2).state is JournalState.SUBMITTED  # type: ignore[union-attr]


def test_failed_refused_and_timeouts(tmp_path: Path) -> None:
    """A failed generation, a refused create and a timeout land in their states."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        journal.record_finished(
            1, generation_id="g1", status="error", video_url=None, credits=None, error="boom"
        )
        journal.record_intent(2)
        journal.record_refused(2, "400 bad")
        journal.record_intent(3)
        journal.record_submitted(3, "g3", "queued")
        journal.record_still_running(3, "g3", "timed out")
        states = {r.line: r.state for r in journal.rows()}
        assert states == {
            1: JournalState.FAILED,
            2: JournalState.REFUSED,
            3: JournalState.SUBMITTED,
        }


def test_inputs_are_matched_by_content_not_by_line(tmp_path: Path) -> None:
    """A line inserted at the top: old inputs keep their key, id and state; the new one is added."""
    with _journal(tmp_path) as journal:
        for key in (1, 2, 3):
            journal.record_intent(key)
            journal.record_submitted(key, f"g{key}", "queued")
        keys = journal.match_inputs(
            [
                (1, {"prompt": "new"}, "hnew"),
                (2, {"prompt": "p1"}, "h1"),
                (3, {"prompt": "p2"}, "h2"),
                (4, {"prompt": "p3"}, "h3"),
            ]
        )
        assert keys[1:] == [1, 2, 3] and keys[0] not in (1, 2, 3)
        rows = {r.key: r for r in journal.rows()}
        assert [(rows[k].line, rows[k].generation_id) for k in (1, 2, 3)] == [
            (2, "g1"),
            (3, "g2"),
            (4, "g3"),
        ]
        assert rows[keys[0]].state is JournalState.PENDING and rows[keys[0]].line == 1


def test_duplicates_are_distinct_inputs_matched_in_order(tmp_path: Path) -> None:
    """Two identical lines are two inputs (occurrence 0 and 1); dropping one keeps the first."""
    with Journal.open(tmp_path) as journal:
        keys = journal.match_inputs([(1, {"prompt": "a"}, "ha"), (5, {"prompt": "a"}, "ha")])
        assert len(set(keys)) == 2
        journal.record_intent(keys[0])
        journal.record_submitted(keys[0], "g-first", "queued")
        journal.record_intent(keys[1])
        journal.record_submitted(keys[1], "g-second", "queued")
        again = journal.match_inputs([(2, {"prompt": "a"}, "ha"), (3, {"prompt": "a"}, "ha")])
        assert again == keys
        alone = journal.match_inputs([(7, {"prompt": "a"}, "ha")])
        assert alone == keys[:1]
        rows = {r.key: r for r in journal.rows()}
        assert (rows[keys[0]].line, rows[keys[0]].generation_id) == (7, "g-first")
        assert (rows[keys[1]].line, rows[keys[1]].generation_id) == (None, "g-second")
        assert [r.key for r in journal.rows()] == keys  # current inputs first, then gone ones


def test_inputs_that_left_the_file(tmp_path: Path) -> None:
    """A changed line: the never-sent old version is dropped, a submitted one is kept, unlined."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        keys = journal.match_inputs(
            [(1, {"prompt": "new1"}, "x1"), (2, {"prompt": "new2"}, "x2"), (3, {"p": 3}, "h3")]
        )
        assert keys[2] == 3
        rows = {r.key: r for r in journal.rows()}
        assert rows[1].line is None and rows[1].generation_id == "g1"
        assert 2 not in rows  # p2 was never sent: nothing to keep
        assert rows[keys[0]].request == {"prompt": "new1"}
        assert rows[keys[0]].state is JournalState.PENDING
        assert len({keys[0], keys[1], 1, 2, 3}) == 5  # keys are never reused


def test_a_schema_1_journal_is_migrated(tmp_path: Path) -> None:
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
    with Journal.open(tmp_path) as journal:
        assert journal.get_meta("schema_version") == "2"
        rows = journal.rows()
        assert [(r.key, r.line, r.occurrence, r.generation_id) for r in rows] == [
            (3, 3, 0, "g3"),
            (4, 4, 1, None),
            (6, 6, 0, "g6"),
        ]
        assert [e[1:3] for e in journal.events(3)] == [(3, "submitted")]
        keys = journal.match_inputs(
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
        ("line", "'three'", "unreadable line"),
    ],
)
def test_a_corrupt_value_is_a_one_line_journal_error(
    tmp_path: Path, column: str, value: str, words: str
) -> None:
    """Garbage in one column of one row: a one-line JournalError naming the file and column."""
    _journal(tmp_path).close()
    conn = sqlite3.connect(tmp_path / JOURNAL_NAME)
    with conn:
        literal = value if value.startswith("'") else "'" + value + "'"
        conn.execute(f"UPDATE inputs SET {column} = {literal} WHERE key = 2")
    conn.close()
    with Journal.open(tmp_path) as journal, pytest.raises(JournalError) as info:
        journal.rows()
    message = str(info.value)
    assert words in message and str(tmp_path) in message and "\n" not in message


def test_a_corrupt_schema_version_is_a_journal_error(tmp_path: Path) -> None:
    """A non-integer schema version is reported in one line, not a ValueError traceback."""
    Journal.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / JOURNAL_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(JournalError, match="schema_version is 'two'"):
        Journal.open(tmp_path)


def test_manifest_write_failure_names_the_disk_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing the manifest: a JournalError saying 'full', old manifest intact."""
    with _journal(tmp_path) as journal:
        path = tmp_path / "manifest.jsonl"
        write_manifest(path, journal.rows())
        before = path.read_bytes()

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(JournalError) as info:
            write_manifest(path, journal.rows())
    assert "is full" in str(info.value) and str(tmp_path) in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "manifest" in p.name) == ["manifest.jsonl"]


def test_reset_for_resubmit_keeps_the_old_id(tmp_path: Path) -> None:
    """Resubmitting keeps earlier generation ids in previous_ids for the audit trail."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        journal.record_finished(
            1, generation_id="g1", status="error", video_url=None, credits=None, error="x"
        )
        journal.reset_for_resubmit(1, "--retry-failed")
        row = journal.row(1)
        assert row is not None
        assert (row.state, row.generation_id, row.previous_ids) == (
            JournalState.PENDING,
            None,
            ["g1"],
        )


def test_file_lost_returns_to_completed(tmp_path: Path) -> None:
    """A lost or corrupt download goes back to completed so the next run fetches it."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        journal.record_finished(
            1, generation_id="g1", status="completed", video_url="u", credits=1, error=None
        )
        journal.record_downloaded(1, file="f.mp4", sha256="0" * 64, size=3)
        journal.record_file_lost(1, "missing")
        row = journal.row(1)
        assert row is not None and row.state is JournalState.COMPLETED and row.file is None


def test_one_process_at_a_time(tmp_path: Path) -> None:
    """A second open of the same folder is refused while the first holds it."""
    with Journal.open(tmp_path), pytest.raises(JournalError, match="another veo-async batch"):
        Journal.open(tmp_path)
    Journal.open(tmp_path).close()


def test_meta_and_newer_schema(tmp_path: Path) -> None:
    """Meta values round-trip; a journal from a newer schema is refused."""
    with Journal.open(tmp_path) as journal:
        journal.set_meta("fingerprint", "abc")
        journal.set_meta("fingerprint", "def")
        assert journal.get_meta("fingerprint") == "def"
        assert journal.get_meta("missing") is None
    conn = sqlite3.connect(tmp_path / JOURNAL_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        Journal.open(tmp_path)


def test_corrupt_file_is_a_journal_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a JournalError, not a traceback."""
    (tmp_path / JOURNAL_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open"):
        Journal.open(tmp_path)


def test_unknown_line_and_failed_transaction(tmp_path: Path) -> None:
    """Updating an unknown line raises and leaves no event behind."""
    with _journal(tmp_path) as journal:
        with pytest.raises(JournalError, match="not in the journal"):
            journal.record_intent(99)
        assert journal.events(99) == []


def test_manifest_has_one_line_per_input(tmp_path: Path) -> None:
    """write_manifest writes every input with the documented keys, atomically."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        path = tmp_path / "manifest.jsonl"
        write_manifest(path, journal.rows())
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
