"""The durable batch journal: nothing lost, nothing paid twice.

A batch writes one SQLite database in its output folder (``.veo-async-journal.sqlite3``, WAL
mode, ``synchronous=FULL``). Each input (keyed by its line number) moves through these states,
every move one committed transaction::

    pending ──intent──▶ submitting ──id──▶ submitted ──▶ completed ──▶ downloaded
                            │                  │
                            │                  └──▶ failed (the generation ended in error)
                            ├──▶ refused    (the create was rejected: nothing was created)
                            └──▶ uncertain  (the create's outcome is unknown)

The intent is committed *before* the create request is sent and the generation id right after
it, so after a crash every input is in one of three situations: never sent (``pending``,
``refused``: safe to submit), sent with a known id (poll it, never submit again), or sent with
no known id (``submitting`` at startup becomes ``uncertain``: reported, resubmitted only when
asked, because it may have been billed).

The ``meta`` table holds the schema version and a fingerprint of the input file's requests,
so a resume with a different file is detected. ``events`` is an append-only audit trail.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import VeoError

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "JournalRow",
    "JournalState",
    "write_manifest",
]

JOURNAL_NAME = ".veo-async-journal.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    line           INTEGER PRIMARY KEY,  -- 1-based line number in the input file (the key)
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
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    line   INTEGER,
    event  TEXT NOT NULL,
    detail TEXT
);
"""


class JournalError(VeoError):
    """The journal cannot be used (another run holds it, a newer schema, a corrupt file)."""


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

    line: int
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
    def _from_sql(cls, row: sqlite3.Row) -> JournalRow:
        return cls(
            line=row["line"],
            request=json.loads(row["request"]),
            request_sha256=row["request_sha256"],
            state=JournalState(row["state"]),
            generation_id=row["generation_id"],
            status=row["status"],
            video_url=row["video_url"],
            credits=row["credits"],
            error=row["error"],
            file=row["file"],
            sha256=row["sha256"],
            size=row["size"],
            previous_ids=json.loads(row["previous_ids"]),
            intent_at=row["intent_at"],
            submitted_at=row["submitted_at"],
            finished_at=row["finished_at"],
            downloaded_at=row["downloaded_at"],
        )


class Journal:
    """A batch journal in ``folder``; open with :meth:`open`, close with :meth:`close`.

    Methods are synchronous and thread-safe (one connection behind a lock); async code calls
    them through ``anyio.to_thread.run_sync``. Every ``record_*`` method is one transaction.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_file: Any | None) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._lock_file = lock_file
        self.path = path
        self.folder = path.parent

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, name: str = JOURNAL_NAME) -> Journal:
        """Open (or create) the journal in ``folder``; only one process may hold it at a time."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        path = root / name
        lock_file = _lock_folder(root / (name + ".lock"))
        try:
            conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit (the intent before a create, the id after it) is on disk
            # before the call returns, so even a power cut cannot lose an id that was paid for.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            journal = cls(conn, path, lock_file)
            version = journal.get_meta("schema_version")
            if version is None:
                journal.set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(version) > SCHEMA_VERSION:
                raise JournalError(
                    f"{path} was written by a newer veo-async (schema {version}); upgrade"
                )
        except sqlite3.DatabaseError as exc:
            _unlock(lock_file)
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        except BaseException:
            _unlock(lock_file)
            raise
        return journal

    def close(self) -> None:
        """Close the database and release the folder lock."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            _unlock(self._lock_file)
            self._lock_file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @staticmethod
    def _event(conn: sqlite3.Connection, line: int | None, event: str, detail: Any = None) -> None:
        conn.execute(
            "INSERT INTO events (at, line, event, detail) VALUES (?, ?, ?, ?)",
            (time.time(), line, event, None if detail is None else json.dumps(detail)),
        )

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ inputs

    def add_inputs(self, inputs: Iterable[tuple[int, Mapping[str, Any], str]]) -> list[int]:
        """Register inputs ``(line, body, body_sha256)``; returns lines whose request changed.

        New lines are added as ``pending``. A known line whose request differs is updated when
        it was never sent (``pending``/``refused``); otherwise it keeps its journaled request
        and generation, and its line number is returned so the caller can report it.
        """
        changed: list[int] = []
        now = time.time()
        with self._tx() as conn:
            for line, body, digest in inputs:
                row = conn.execute(
                    "SELECT state, request_sha256 FROM inputs WHERE line = ?", (line,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO inputs (line, request, request_sha256, state, updated_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (line, json.dumps(dict(body)), digest, JournalState.PENDING.value, now),
                    )
                elif row["request_sha256"] != digest:
                    if row["state"] in (JournalState.PENDING.value, JournalState.REFUSED.value):
                        conn.execute(
                            "UPDATE inputs SET request = ?, request_sha256 = ?, state = ?, "
                            "error = NULL, updated_at = ? WHERE line = ?",
                            (json.dumps(dict(body)), digest, JournalState.PENDING.value, now, line),
                        )
                        self._event(conn, line, "request_changed")
                    else:
                        changed.append(line)
        return changed

    def rows(self) -> list[JournalRow]:
        """Every input, by line number."""
        with self._lock:
            result = self._conn.execute("SELECT * FROM inputs ORDER BY line").fetchall()
        return [JournalRow._from_sql(r) for r in result]

    def row(self, line: int) -> JournalRow | None:
        """One input, or ``None``."""
        with self._lock:
            r = self._conn.execute("SELECT * FROM inputs WHERE line = ?", (line,)).fetchone()
        return None if r is None else JournalRow._from_sql(r)

    def events(self, line: int | None = None) -> list[tuple[float, int | None, str, Any]]:
        """The audit trail ``(time, line, event, detail)``, oldest first."""
        sql = "SELECT at, line, event, detail FROM events"
        args: tuple[Any, ...] = ()
        if line is not None:
            sql, args = sql + " WHERE line = ?", (line,)
        with self._lock:
            result = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            (
                r["at"],
                r["line"],
                r["event"],
                None if r["detail"] is None else json.loads(r["detail"]),
            )
            for r in result
        ]

    def recover_interrupted(self) -> list[int]:
        """At startup: inputs left ``submitting`` by a dead process become ``uncertain``."""
        with self._tx() as conn:
            lines = [
                r["line"]
                for r in conn.execute(
                    "SELECT line FROM inputs WHERE state = ?", (JournalState.SUBMITTING.value,)
                )
            ]
            for line in lines:
                conn.execute(
                    "UPDATE inputs SET state = ?, error = ?, updated_at = ? WHERE line = ?",
                    (
                        JournalState.UNCERTAIN.value,
                        "the process stopped while the create request was in flight; "
                        "it may or may not have started a billed generation",
                        time.time(),
                        line,
                    ),
                )
                self._event(conn, line, "recovered_uncertain")
        return lines

    def _update(self, line: int, event: str, detail: Any = None, **values: Any) -> None:
        values["updated_at"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in values)
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE inputs SET {columns} WHERE line = ?", (*values.values(), line)
            )
            if cur.rowcount != 1:
                raise JournalError(f"line {line} is not in the journal")
            self._event(conn, line, event, detail)

    def record_intent(self, line: int) -> None:
        """About to send the create for ``line`` (committed before the request goes out)."""
        self._update(
            line, "intent", state=JournalState.SUBMITTING.value, intent_at=time.time(), error=None
        )

    def record_submitted(self, line: int, generation_id: str, status: str | None) -> None:
        """The create for ``line`` returned ``generation_id``."""
        self._update(
            line,
            "submitted",
            {"generation_id": generation_id},
            state=JournalState.SUBMITTED.value,
            generation_id=generation_id,
            status=status,
            submitted_at=time.time(),
        )

    def record_not_sent(self, line: int) -> bool:
        """The create for ``line`` was never sent after all (cancelled before it went out).

        Moves ``submitting`` back to ``pending``; any other state is left alone. Returns
        whether the row changed.
        """
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE inputs SET state = ?, updated_at = ? WHERE line = ? AND state = ?",
                (JournalState.PENDING.value, time.time(), line, JournalState.SUBMITTING.value),
            )
            if cur.rowcount:
                self._event(conn, line, "not_sent")
            return bool(cur.rowcount)

    def record_uncertain(self, line: int, error: str) -> None:
        """The create for ``line`` may or may not have made a generation."""
        self._update(line, "uncertain", error, state=JournalState.UNCERTAIN.value, error=error)

    def record_refused(self, line: int, error: str) -> None:
        """The create for ``line`` was refused; nothing was created (safe to submit again)."""
        self._update(line, "refused", error, state=JournalState.REFUSED.value, error=error)

    def record_finished(
        self,
        line: int,
        *,
        generation_id: str,
        status: str | None,
        video_url: str | None,
        credits: float | None,
        error: str | None,
    ) -> None:
        """The generation of ``line`` finished: ``completed`` with a URL, else ``failed``."""
        state = JournalState.COMPLETED if video_url and error is None else JournalState.FAILED
        self._update(
            line,
            state.value,
            {"generation_id": generation_id, "status": status},
            state=state.value,
            generation_id=generation_id,
            status=status,
            video_url=video_url,
            credits=credits,
            error=error,
            finished_at=time.time(),
        )

    def record_still_running(self, line: int, generation_id: str, error: str) -> None:
        """Waiting for ``line`` ran out of time; its id stays tracked for the next run."""
        self._update(
            line,
            "timeout",
            error,
            state=JournalState.SUBMITTED.value,
            generation_id=generation_id,
            error=error,
        )

    def record_downloaded(self, line: int, *, file: str, sha256: str, size: int) -> None:
        """The video of ``line`` is on disk at ``file`` (relative to the journal's folder)."""
        self._update(
            line,
            "downloaded",
            {"file": file, "sha256": sha256, "size": size},
            state=JournalState.DOWNLOADED.value,
            file=file,
            sha256=sha256,
            size=size,
            error=None,
            downloaded_at=time.time(),
        )

    def record_download_failed(self, line: int, error: str) -> None:
        """The video of ``line`` could not be downloaded (the next run tries again)."""
        self._update(
            line, "download_failed", error, state=JournalState.COMPLETED.value, error=error
        )

    def record_file_lost(self, line: int, reason: str) -> None:
        """A downloaded file is missing or does not match its SHA-256: download it again."""
        self._update(
            line,
            "file_lost",
            reason,
            state=JournalState.COMPLETED.value,
            file=None,
            sha256=None,
            size=None,
            error=reason,
        )

    def reset_for_resubmit(self, line: int, reason: str) -> None:
        """Make ``line`` submittable again (``--resubmit-uncertain``, ``--retry-failed``)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT generation_id, previous_ids FROM inputs WHERE line = ?", (line,)
            ).fetchone()
            if row is None:
                raise JournalError(f"line {line} is not in the journal")
            previous = json.loads(row["previous_ids"])
            if row["generation_id"]:
                previous.append(row["generation_id"])
            conn.execute(
                "UPDATE inputs SET state = ?, generation_id = NULL, status = NULL, "
                "video_url = NULL, credits = NULL, error = NULL, previous_ids = ?, "
                "updated_at = ? WHERE line = ?",
                (JournalState.PENDING.value, json.dumps(previous), time.time(), line),
            )
            self._event(conn, line, "reset", reason)


# --------------------------------------------------------------------------- manifest


def manifest_entry(row: JournalRow) -> dict[str, Any]:
    """One ``manifest.jsonl`` line for an input."""
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
    """Write ``manifest.jsonl`` (one line per input) atomically: temp file, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(manifest_entry(row), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
