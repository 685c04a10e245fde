"""Tests of veo_async._journal: the durable state machine behind resumable batches."""

from __future__ import annotations

import json
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
    journal.add_inputs((line, {"prompt": f"p{line}"}, f"h{line}") for line in lines)
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
        assert events == ["intent", "submitted", "completed", "downloaded"]


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


def test_changed_requests_update_only_unsent_lines(tmp_path: Path) -> None:
    """A changed request replaces a never-sent line but is reported for a submitted one."""
    with _journal(tmp_path) as journal:
        journal.record_intent(1)
        journal.record_submitted(1, "g1", "queued")
        changed = journal.add_inputs(
            [(1, {"prompt": "new1"}, "x1"), (2, {"prompt": "new2"}, "x2"), (4, {"p": 4}, "h4")]
        )
        assert changed == [1]
        assert journal.row(1).request == {"prompt": "p1"}  # type: ignore[union-attr]
        assert journal.row(2).request == {"prompt": "new2"}  # type: ignore[union-attr]
        assert journal.row(4) is not None


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
