"""The records of a batch journal: input states and rows, errors, the manifest, the lock.

Split from :mod:`veo_async._journal` (which holds the :class:`~veo_async._journal.Journal`
itself and re-exports every name here): what a journal row *is* and how it is read from the
journal's store file (:func:`read_rows`, :func:`read_events`, :func:`read_meta`: plain
synchronous readers, run on the store's worker thread by the journal and directly by the
read-only report), how a failure to write is worded (a full disk says so), how the manifest is
written from the rows, and the folder lock.
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
from ._inputs import redact_body

__all__ = [
    "JournalError",
    "JournalRow",
    "JournalState",
    "disk_problem",
    "manifest_entry",
    "read_events",
    "read_meta",
    "read_rows",
    "write_manifest",
]


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
    """One input as the journal knows it (a job of the journal's store, with its line)."""

    key: int
    """The input's number in the journal (the store job's ``seq``): stable, never reused."""
    line: int | None
    """Its 1-based line in the current input file (``None``: no longer in the file)."""
    occurrence: int
    """The n-th input with this same request, from 0."""
    request: dict[str, Any]
    """The request body, long data URIs shortened."""
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
    store_key: str = ""
    """The job's key in the store (:func:`~veo_async.stores.input_key` of the request)."""

    @classmethod
    def _from_sql(cls, row: sqlite3.Row, path: Path) -> JournalRow:
        key = row["seq"]
        column = "key"
        try:
            if not isinstance(key, int):
                raise ValueError(f"not an integer: {key!r}")
            store_key = str(row["key"])
            digest, _, copy = store_key.rpartition(".")
            if not copy.isdigit() or not digest:  # the first copy, or a job added by id
                digest, copy = store_key, "1"
            occurrence = int(copy) - 1
            column = "line"
            line = row["line"]
            if line is not None and not isinstance(line, int):
                raise ValueError(f"not an integer: {line!r}")
            column = "request"
            request = {} if row["request"] is None else json.loads(row["request"])
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
                occurrence=occurrence,
                request=redact_body(request),
                request_sha256=digest,
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
                store_key=store_key,
            )
        except (ValueError, TypeError, RecursionError) as exc:
            raise damaged(path, key, column, exc) from None


def damaged(path: Path, key: object, column: str, exc: BaseException) -> JournalError:
    """The one-line error for an unreadable value in the journal at ``path``."""
    detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return JournalError(
        f"the journal {path} is damaged: input {key!r} has an unreadable {column} "
        f"({detail}); move the folder aside and run the batch into a new --out folder"
    )


# --------------------------------------------------------------------------- readers

_ROWS = """
SELECT j.seq, l.line, j.key, j.request, j.state, j.generation_id, j.status, j.video_url,
    j.credits, j.error, j.file, j.sha256, j.size, j.previous_ids, j.intent_at, j.submitted_at,
    j.finished_at, j.downloaded_at
FROM jobs AS j LEFT JOIN job_lines AS l ON l.batch = j.batch AND l.key = j.key
WHERE j.batch = ?
"""


def read_rows(
    conn: sqlite3.Connection, batch: str, path: Path, seq: int | None = None
) -> list[JournalRow]:
    """The inputs of ``batch`` (those in the current file by line, then the ones no longer in
    it), or the one numbered ``seq``. Raises :class:`JournalError` for a damaged value."""
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    if seq is None:
        cur.execute(_ROWS + "ORDER BY l.line IS NULL, l.line, j.seq", (batch,))
    else:
        cur.execute(_ROWS + "AND j.seq = ?", (batch, seq))
    return [JournalRow._from_sql(r, path) for r in cur.fetchall()]


def read_events(
    conn: sqlite3.Connection, batch: str, seq: int | None = None
) -> list[tuple[float, int | None, str, Any]]:
    """The audit trail ``(time, input key, event, detail)`` of ``batch``, oldest first."""
    sql = (
        "SELECT e.at, j.seq, e.event, e.detail FROM events AS e "
        "LEFT JOIN jobs AS j ON j.batch = e.batch AND j.key = e.key WHERE e.batch = ?"
    )
    args: tuple[Any, ...] = (batch,)
    if seq is not None:
        sql, args = sql + " AND j.seq = ?", (batch, seq)
    out: list[tuple[float, int | None, str, Any]] = []
    for at, key, event, raw in conn.execute(sql + " ORDER BY e.id", args):
        try:
            detail = None if raw is None else json.loads(raw)
        except (ValueError, RecursionError):
            detail = raw
        out.append((at, key, event, detail))
    return out


def read_meta(conn: sqlite3.Connection, batch: str, name: str) -> str | None:
    """A value of the batch's ``store_meta``, or ``None``."""
    row = conn.execute(
        "SELECT value FROM store_meta WHERE batch = ? AND name = ?", (batch, name)
    ).fetchone()
    return None if row is None else str(row[0])


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
