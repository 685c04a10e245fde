"""The durable batch journal: nothing lost, nothing paid twice.

A batch writes one SQLite database in its output folder (``.veo-async-journal.sqlite3``, WAL
mode, ``synchronous=FULL``). Each input has a stable ``key`` and is matched to the lines of the
input file by *content*: the SHA-256 of its request body plus its ``occurrence`` among inputs
with the same body (the first ``a fox`` is occurrence 0, a second identical line occurrence 1).
Its ``line`` is where it stands in the current file, updated on every run, so inserting,
removing or moving lines never hands one input's generation to another. Each input moves
through these states, every move one committed transaction::

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

The ``meta`` table holds the schema version, a fingerprint of the input file's requests (so
a resume with a different file is detected) and the service that made the generations (so
emulated results are never taken for real ones). ``events`` is an append-only audit trail.

Every failure to read or write the journal is a :class:`JournalError` with one line of text
naming the file or folder (a full disk says so), never a raw ``sqlite3`` error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._journal_records import (
    _COPY_V1,
    _MIGRATE_1_TO_2,
    _SCHEMA,
    JournalError,
    JournalRow,
    JournalState,
    _DiskFull,
    _is_full,
    _lock_folder,
    _unlock,
    disk_problem,
    manifest_entry,
    write_manifest,
)

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "JournalRow",
    "JournalState",
    "disk_problem",
    "manifest_entry",
    "write_manifest",
]

JOURNAL_NAME = ".veo-async-journal.sqlite3"
SCHEMA_VERSION = 2
#: Bytes set aside next to the journal while it is open (``<journal>.reserve``): when the disk
#: fills up, the reserve is released so the journal can still record the ids of creates that
#: were already sent (a full disk must never lose an id that was paid for).
RESERVE_BYTES = 256 * 1024


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
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.disk_full = False
        """Set once a write found the disk full (the reserve was released): stop submitting."""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        name: str = JOURNAL_NAME,
        reserve: int = RESERVE_BYTES,
    ) -> Journal:
        """Open (or create) the journal in ``folder``; only one process may hold it at a time.

        ``reserve`` bytes are set aside on the same disk (released if the disk fills up, so the
        ids of creates in flight can still be recorded); when even that much room is missing,
        the open fails before anything is sent.
        """
        root = Path(folder)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the folder {disk_problem(root, exc)}") from None
        path = root / name
        try:
            lock_file = _lock_folder(root / (name + ".lock"))
        except OSError as exc:
            raise JournalError(f"cannot lock the folder: {disk_problem(root, exc)}") from None
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
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            journal = cls(conn, path, lock_file)
            raw = journal.get_meta("schema_version")
            try:
                version = None if raw is None else int(raw)
            except ValueError:
                raise JournalError(
                    f"the journal {path} is damaged: schema_version is {raw!r}, not a number; "
                    "move the folder aside and run the batch into a new --out folder"
                ) from None
            if version is not None and version > SCHEMA_VERSION:
                raise JournalError(
                    f"{path} was written by a newer veo-async (schema {version}); upgrade"
                )
            if version == 1:  # one transaction: a failed migration leaves schema 1 intact
                conn.executescript(
                    "BEGIN IMMEDIATE;" + _MIGRATE_1_TO_2 + _SCHEMA + _COPY_V1 + "COMMIT;"
                )
            else:
                conn.executescript(_SCHEMA)
            if version != SCHEMA_VERSION:
                journal.set_meta("schema_version", str(SCHEMA_VERSION))
            if reserve:
                journal._make_reserve(reserve)
        except (sqlite3.DatabaseError, OSError) as exc:
            _unlock(lock_file)
            raise JournalError(
                f"cannot open the journal {path}: {disk_problem(root, exc)}"
            ) from None
        except BaseException:
            _unlock(lock_file)
            raise
        return journal

    def close(self) -> None:
        """Close the database, drop the reserve and release the folder lock."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            _unlock(self._lock_file)
            self._lock_file = None

    def _make_reserve(self, size: int) -> None:
        try:
            if self.reserve_path.exists() and self.reserve_path.stat().st_size >= size:
                return
            with open(self.reserve_path, "wb") as fh:
                block = b"\0" * 65536
                for offset in range(0, size, len(block)):
                    fh.write(block[: min(len(block), size - offset)])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            raise JournalError(
                f"not enough room to start: {disk_problem(self.folder, exc)}; the batch needs "
                f"at least {size // 1024} KiB free besides its videos (nothing was submitted)"
            ) from None

    def _release_reserve(self) -> bool:
        """Free the reserve (the disk is full); whether there was one to free."""
        self.disk_full = True
        try:
            self.reserve_path.unlink()
        except OSError:
            return False
        return True

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; a database failure (a full disk) becomes a one-line JournalError."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                words = (
                    f"cannot write the journal {self.path.name}: {disk_problem(self.folder, exc)}"
                )
                if _is_full(exc):
                    raise _DiskFull(words) from None
                raise JournalError(words) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(
                    f"cannot read the journal {self.path}: {disk_problem(self.folder, exc)}"
                ) from None

    @staticmethod
    def _event(conn: sqlite3.Connection, key: int | None, event: str, detail: Any = None) -> None:
        conn.execute(
            "INSERT INTO events (at, key, event, detail) VALUES (?, ?, ?, ?)",
            (time.time(), key, event, None if detail is None else json.dumps(detail)),
        )

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or ``None``."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0]["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ inputs

    def match_inputs(self, inputs: Iterable[tuple[int, Mapping[str, Any], str]]) -> list[int]:
        """Match the inputs ``(line, body, body_sha256)`` to the journal; returns their keys.

        Matching is by content, never by position: the n-th input with a given body SHA-256
        is the journal's input with that SHA-256 and occurrence n. A match takes the input's
        current line; an input with no match is added as ``pending``. Journal inputs that
        match nothing get ``line = NULL`` (no longer in the file): those never sent
        (``pending``/``refused`` with no earlier generation) are dropped, the others (they
        hold a generation or a file) are kept for the manifest.
        """
        keys: list[int] = []
        now = time.time()
        seen: Counter[str] = Counter()
        with self._tx() as conn:
            conn.execute("UPDATE inputs SET line = NULL")
            for line, body, digest in inputs:
                occurrence = seen[digest]
                seen[digest] += 1
                row = conn.execute(
                    "SELECT key, line FROM inputs WHERE request_sha256 = ? AND occurrence = ?",
                    (digest, occurrence),
                ).fetchone()
                if row is not None:
                    conn.execute("UPDATE inputs SET line = ? WHERE key = ?", (line, row["key"]))
                    keys.append(int(row["key"]))
                    continue
                cur = conn.execute(
                    "INSERT INTO inputs (line, occurrence, request, request_sha256, state, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        line,
                        occurrence,
                        json.dumps(dict(body)),
                        digest,
                        JournalState.PENDING.value,
                        now,
                    ),
                )
                assert cur.lastrowid is not None
                keys.append(cur.lastrowid)
                self._event(conn, cur.lastrowid, "added", {"line": line})
            conn.execute(
                "DELETE FROM inputs WHERE line IS NULL AND state IN (?, ?) "
                "AND generation_id IS NULL AND previous_ids = '[]' AND file IS NULL",
                (JournalState.PENDING.value, JournalState.REFUSED.value),
            )
        return keys

    def rows(self) -> list[JournalRow]:
        """Every input: those in the current file by line, then the ones no longer in it."""
        result = self._query("SELECT * FROM inputs ORDER BY line IS NULL, line, key")
        return [JournalRow._from_sql(r, self.path) for r in result]

    def row(self, key: int) -> JournalRow | None:
        """One input by key, or ``None``."""
        result = self._query("SELECT * FROM inputs WHERE key = ?", (key,))
        return JournalRow._from_sql(result[0], self.path) if result else None

    def events(self, key: int | None = None) -> list[tuple[float, int | None, str, Any]]:
        """The audit trail ``(time, input key, event, detail)``, oldest first."""
        sql = "SELECT at, key, event, detail FROM events"
        args: tuple[Any, ...] = ()
        if key is not None:
            sql, args = sql + " WHERE key = ?", (key,)
        result = self._query(sql + " ORDER BY id", args)
        out: list[tuple[float, int | None, str, Any]] = []
        for r in result:
            try:
                detail = None if r["detail"] is None else json.loads(r["detail"])
            except (ValueError, RecursionError):
                detail = r["detail"]
            out.append((r["at"], r["key"], r["event"], detail))
        return out

    def recover_interrupted(self) -> list[int]:
        """At startup: inputs left ``submitting`` by a dead process become ``uncertain``."""
        with self._tx() as conn:
            keys = [
                r["key"]
                for r in conn.execute(
                    "SELECT key FROM inputs WHERE state = ?", (JournalState.SUBMITTING.value,)
                )
            ]
            for key in keys:
                conn.execute(
                    "UPDATE inputs SET state = ?, error = ?, updated_at = ? WHERE key = ?",
                    (
                        JournalState.UNCERTAIN.value,
                        "the process stopped while the create request was in flight; "
                        "it may or may not have started a billed generation",
                        time.time(),
                        key,
                    ),
                )
                self._event(conn, key, "recovered_uncertain")
        return keys

    def _update(self, key: int, event: str, detail: Any = None, **values: Any) -> None:
        """One state change; on a full disk, release the reserve and try once more."""
        try:
            self._update_once(key, event, detail, **values)
        except _DiskFull:
            if not self._release_reserve():
                raise
            self._update_once(key, event, detail, **values)

    def _update_once(self, key: int, event: str, detail: Any = None, **values: Any) -> None:
        values["updated_at"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in values)
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE inputs SET {columns} WHERE key = ?", (*values.values(), key)
            )
            if cur.rowcount != 1:
                raise JournalError(f"input {key} is not in the journal")
            self._event(conn, key, event, detail)

    def record_intent(self, key: int) -> None:
        """About to send the create for ``key`` (committed before the request goes out)."""
        self._update(
            key, "intent", state=JournalState.SUBMITTING.value, intent_at=time.time(), error=None
        )

    def record_submitted(self, key: int, generation_id: str, status: str | None) -> None:
        """The create for ``key`` returned ``generation_id``."""
        self._update(
            key,
            "submitted",
            {"generation_id": generation_id},
            state=JournalState.SUBMITTED.value,
            generation_id=generation_id,
            status=status,
            submitted_at=time.time(),
        )

    def record_not_sent(self, key: int) -> bool:
        """The create for ``key`` was never sent after all (cancelled before it went out).

        Moves ``submitting`` back to ``pending``; any other state is left alone. Returns
        whether the row changed.
        """
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE inputs SET state = ?, updated_at = ? WHERE key = ? AND state = ?",
                (JournalState.PENDING.value, time.time(), key, JournalState.SUBMITTING.value),
            )
            if cur.rowcount:
                self._event(conn, key, "not_sent")
            return bool(cur.rowcount)

    def record_uncertain(self, key: int, error: str) -> None:
        """The create for ``key`` may or may not have made a generation."""
        self._update(key, "uncertain", error, state=JournalState.UNCERTAIN.value, error=error)

    def record_refused(self, key: int, error: str) -> None:
        """The create for ``key`` was refused; nothing was created (safe to submit again)."""
        self._update(key, "refused", error, state=JournalState.REFUSED.value, error=error)

    def record_finished(
        self,
        key: int,
        *,
        generation_id: str,
        status: str | None,
        video_url: str | None,
        credits: float | None,
        error: str | None,
        polls: int | None = None,
    ) -> None:
        """The generation of ``key`` finished: ``completed`` with a URL, else ``failed``.

        ``polls``: the status requests this run made for it (recorded in the event's detail,
        read by ``veo-async report`` as requests per input).
        """
        state = JournalState.COMPLETED if video_url and error is None else JournalState.FAILED
        detail: dict[str, Any] = {"generation_id": generation_id, "status": status}
        if polls is not None:
            detail["polls"] = polls
        self._update(
            key,
            state.value,
            detail,
            state=state.value,
            generation_id=generation_id,
            status=status,
            video_url=video_url,
            credits=credits,
            error=error,
            finished_at=time.time(),
        )

    def record_status(self, key: int, status: str) -> None:
        """The generation of ``key`` was seen in ``status`` (an event only; no state change).

        The batch records the first time a job is seen running (``generating``), which the
        report shows as "started" on its timeline.
        """
        with self._tx() as conn:
            self._event(conn, key, "status", {"status": status})

    def record_still_running(
        self, key: int, generation_id: str, error: str, polls: int | None = None
    ) -> None:
        """Waiting for ``key`` ran out of time; its id stays tracked for the next run."""
        self._update(
            key,
            "timeout",
            error if polls is None else {"error": error, "polls": polls},
            state=JournalState.SUBMITTED.value,
            generation_id=generation_id,
            error=error,
        )

    def record_downloaded(self, key: int, *, file: str, sha256: str, size: int) -> None:
        """The video of ``key`` is on disk at ``file`` (relative to the journal's folder)."""
        self._update(
            key,
            "downloaded",
            {"file": file, "sha256": sha256, "size": size},
            state=JournalState.DOWNLOADED.value,
            file=file,
            sha256=sha256,
            size=size,
            error=None,
            downloaded_at=time.time(),
        )

    def record_download_failed(self, key: int, error: str) -> None:
        """The video of ``key`` could not be downloaded (the next run tries again)."""
        self._update(key, "download_failed", error, state=JournalState.COMPLETED.value, error=error)

    def record_file_lost(self, key: int, reason: str) -> None:
        """A downloaded file is missing or does not match its SHA-256: download it again."""
        self._update(
            key,
            "file_lost",
            reason,
            state=JournalState.COMPLETED.value,
            file=None,
            sha256=None,
            size=None,
            error=reason,
        )

    def reset_for_resubmit(self, key: int, reason: str) -> None:
        """Make ``key`` submittable again (``--resubmit-uncertain``, ``--retry-failed``)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT generation_id, previous_ids FROM inputs WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                raise JournalError(f"input {key} is not in the journal")
            previous = json.loads(row["previous_ids"])
            if row["generation_id"]:
                previous.append(row["generation_id"])
            conn.execute(
                "UPDATE inputs SET state = ?, generation_id = NULL, status = NULL, "
                "video_url = NULL, credits = NULL, error = NULL, previous_ids = ?, "
                "updated_at = ? WHERE key = ?",
                (JournalState.PENDING.value, json.dumps(previous), time.time(), key),
            )
            self._event(conn, key, "reset", reason)
