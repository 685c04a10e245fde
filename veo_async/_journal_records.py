"""The records of a batch journal: input states and rows, errors, the manifest, the lock.

Split from :mod:`veo_async._journal` (which holds the :class:`~veo_async._journal.Journal`
itself and re-exports every name here): what a journal row *is*, how a failure to write is
worded (a full disk says so), how the manifest is written from the rows, and the folder lock.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import VeoError

__all__ = [
    "JournalError",
    "JournalRow",
    "JournalState",
    "disk_problem",
    "manifest_entry",
    "write_manifest",
]


#: The journal's tables (schema 2): inputs keyed by content, an append-only event trail.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    key            INTEGER PRIMARY KEY AUTOINCREMENT,  -- stable id of the input, never reused
    line           INTEGER,              -- 1-based line in the current input file (NULL: gone)
    occurrence     INTEGER NOT NULL DEFAULT 0,  -- n-th input with this same request (from 0)
    request        TEXT NOT NULL,        -- JSON body, long data URIs shortened
    request_sha256 TEXT NOT NULL,        -- SHA-256 of the full canonical body
    state          TEXT NOT NULL,        -- a JournalState value
    generation_id  TEXT,
    status         TEXT,                 -- last known generation status
    video_url      TEXT,
    credits        REAL,
    error          TEXT,
    file           TEXT,                 -- downloaded file, relative to the journal's folder
    sha256         TEXT,
    size           INTEGER,
    previous_ids   TEXT NOT NULL DEFAULT '[]',  -- ids of earlier attempts (resubmissions)
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
    key    INTEGER,                      -- the input's key (NULL: the whole batch)
    event  TEXT NOT NULL,
    detail TEXT
);
"""

#: Schema 1 keyed inputs by line number; its rows keep their line as their key.
_MIGRATE_1_TO_2 = """
DROP INDEX IF EXISTS inputs_generation_id;
ALTER TABLE inputs RENAME TO inputs_v1;
ALTER TABLE events RENAME COLUMN line TO key;
"""
_COPY_V1 = """
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


class JournalError(VeoError):
    """The journal cannot be used (another run holds it, a newer schema, a corrupt file, a
    full disk); the message is one line naming the file or folder."""


class _DiskFull(JournalError):
    """A journal write failed because the disk is full."""


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == 13 or "full" in str(exc).lower()
    return False


def disk_problem(folder: Path, exc: BaseException) -> str:
    """Words for a write failure under ``folder``: says "disk full" (and the free space) then."""
    full = _is_full(exc)
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or repr(exc)
    if full:
        try:
            free = shutil.disk_usage(folder).free
            where = f"the disk holding {folder} is full ({free:,} bytes free)"
        except OSError:
            where = f"the disk holding {folder} is full"
        return f"{where}: {text}"
    return f"{folder}: {text}"


class JournalState(str, enum.Enum):
    """Where one input stands; see the module docstring for the transitions."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    UNCERTAIN = "uncertain"
    REFUSED = "refused"
    FAILED = "failed"
    COMPLETED = "completed"
    DOWNLOADED = "downloaded"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JournalRow:
    """One input as the journal knows it."""

    key: int
    line: int | None
    occurrence: int
    request: dict[str, Any]
    request_sha256: str
    state: JournalState
    generation_id: str | None
    status: str | None
    video_url: str | None
    credits: float | None
    error: str | None
    file: str | None
    sha256: str | None
    size: int | None
    previous_ids: list[str]
    intent_at: float | None
    submitted_at: float | None
    finished_at: float | None
    downloaded_at: float | None

    @classmethod
    def _from_sql(cls, row: sqlite3.Row, path: Path) -> JournalRow:
        key = row["key"]
        column = "key"
        try:
            if not isinstance(key, int):
                raise ValueError(f"not an integer: {key!r}")
            column = "line"
            line = row["line"]
            if line is not None and not isinstance(line, int):
                raise ValueError(f"not an integer: {line!r}")
            column = "request"
            request = json.loads(row["request"])
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            column = "state"
            state = JournalState(row["state"])
            column = "previous_ids"
            previous = json.loads(row["previous_ids"])
            if not isinstance(previous, list):
                raise ValueError("not a JSON list")
            column = "size"
            size = row["size"]
            if size is not None and not isinstance(size, int):
                raise ValueError(f"not an integer: {size!r}")
            column = "credits"
            credits = row["credits"]
            if credits is not None and not isinstance(credits, (int, float)):
                raise ValueError(f"not a number: {credits!r}")
            return cls(
                key=key,
                line=line,
                occurrence=int(row["occurrence"]),
                request=request,
                request_sha256=str(row["request_sha256"]),
                state=state,
                generation_id=row["generation_id"],
                status=row["status"],
                video_url=row["video_url"],
                credits=credits,
                error=row["error"],
                file=row["file"],
                sha256=row["sha256"],
                size=size,
                previous_ids=[str(x) for x in previous],
                intent_at=row["intent_at"],
                submitted_at=row["submitted_at"],
                finished_at=row["finished_at"],
                downloaded_at=row["downloaded_at"],
            )
        except (ValueError, TypeError, RecursionError) as exc:
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise JournalError(
                f"the journal {path} is damaged: input {key!r} has an unreadable {column} "
                f"({detail}); move the folder aside and run the batch into a new --out folder"
            ) from None


# --------------------------------------------------------------------------- manifest


def manifest_entry(row: JournalRow) -> dict[str, Any]:
    """One ``manifest.jsonl`` line for an input (``line`` is ``None`` once it left the file)."""
    return {
        "line": row.line,
        "request": row.request,
        "generation_id": row.generation_id,
        "state": row.state.value,
        "status": row.status,
        "video_url": row.video_url,
        "file": row.file,
        "sha256": row.sha256,
        "size": row.size,
        "credits": row.credits,
        "error": row.error,
        "previous_generation_ids": row.previous_ids,
    }


def write_manifest(path: Path, rows: Sequence[JournalRow]) -> None:
    """Write ``manifest.jsonl`` (one line per input) atomically: temp file, fsync, rename.

    A write failure (a full disk) removes the temporary file, leaves the previous manifest
    as it was, and raises a one-line :class:`JournalError` naming the folder.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(manifest_entry(row), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise JournalError(
            f"cannot write {path.name}: {disk_problem(path.parent, exc)} (the journal is "
            "intact; rerun the same command once there is room)"
        ) from None


# --------------------------------------------------------------------------- folder lock


def _lock_folder(path: Path) -> Any | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return None
    fh = open(path, "a+")  # noqa: SIM115 - held open for the lifetime of the journal
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise JournalError(
            f"another veo-async batch is using {path.parent} right now; wait for it to finish "
            "(or stop it) before running this batch again"
        ) from None
    return fh


def _unlock(fh: Any | None) -> None:
    if fh is not None:
        with contextlib.suppress(OSError):
            fh.close()
