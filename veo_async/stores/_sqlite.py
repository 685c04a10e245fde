"""The embedded job store: one SQLite file, WAL mode, every step one committed transaction.

Same durability as the CLI journal (``synchronous=FULL``: a committed intent or id is on disk
before the call returns, so neither SIGKILL nor a power cut loses it). Every blocking sqlite3
call runs in a worker thread, one at a time (a :class:`anyio.CapacityLimiter` of 1 in front of
one connection), never on the event loop; a cancelled caller lets its transaction finish.

Several processes on one machine may share the file (``BEGIN IMMEDIATE`` serialises writers,
readers never block in WAL mode): the intent step is still won by exactly one of them. Leases
use this machine's wall clock, which is shared by all of them.

``veo-async batch`` without ``--store`` keeps its journal in such a file too
(``OUT/.veo-async-journal.sqlite3``, batch ``cli``): :class:`~veo_async._journal.Journal` is a
thin adapter over this class, which also records each input's line in the CLI's input file
(``job_lines``), and moves an old journal into these tables when it opens one
(:mod:`._legacy`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ._base import (
    Event,
    JobState,
    StoredJob,
    StoreError,
    WorkItem,
    plan_transition,
    validate_batch_id,
)
from ._legacy import LegacyJournalError, migrate_legacy

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    batch TEXT NOT NULL,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (batch, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    batch         TEXT NOT NULL,
    key           TEXT NOT NULL,         -- input_key(): SHA-256 of the canonical request
    seq           INTEGER NOT NULL,      -- order of arrival in the batch
    request       TEXT,                  -- JSON body (NULL for a job added by id)
    state         TEXT NOT NULL,
    generation_id TEXT,
    status        TEXT,
    video_url     TEXT,
    credits       REAL,
    error         TEXT,
    file          TEXT,
    sha256        TEXT,
    size          INTEGER,
    owner         TEXT,                  -- worker that took the intent
    claim_token   TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    previous_ids  TEXT NOT NULL DEFAULT '[]',
    intent_at     REAL,
    submitted_at  REAL,
    finished_at   REAL,
    downloaded_at REAL,
    updated_at    REAL NOT NULL,
    PRIMARY KEY (batch, key)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (batch, state);
CREATE TABLE IF NOT EXISTS work (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    batch      TEXT NOT NULL,
    key        TEXT NOT NULL,
    kind       TEXT NOT NULL,             -- submit | track
    owner      TEXT,                      -- NULL: not taken yet
    renewed_at REAL,
    acked      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS work_open ON work (batch, acked, owner, id);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    batch  TEXT NOT NULL,
    at     REAL NOT NULL,
    key    TEXT,
    event  TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS job_lines (  -- the CLI journal: each input's line in its file
    batch TEXT NOT NULL,
    key   TEXT NOT NULL,
    line  INTEGER NOT NULL,               -- 1-based (no row: not in the current file)
    PRIMARY KEY (batch, key)
);
"""

_COLUMNS = (
    "key, seq, request, state, generation_id, status, video_url, credits, error, file, "
    "sha256, size, owner, attempts, previous_ids, intent_at, submitted_at, finished_at, "
    "downloaded_at, updated_at"
)


class SQLiteStore:
    """A :class:`~veo_async.stores.JobStore` in one SQLite file; open with :meth:`open`.

    ``async with await SQLiteStore.open("jobs.sqlite3", batch_id="b-1") as store: ...``
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, batch_id: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the connection is used from one thread at a time
        self._limiter = anyio.CapacityLimiter(1)
        self._batch = batch_id
        self._closed = False
        self.path = path

    @property
    def batch_id(self) -> str:
        """The namespace of this batch in the file."""
        return self._batch

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, batch_id: str, page_size: int | None = None
    ) -> SQLiteStore:
        """Open (or create) the store file at ``path`` for batch ``batch_id``.

        ``page_size`` (bytes, a power of two from 512) applies to a file this call creates:
        smaller pages mean smaller WAL frames per transaction (the CLI journal uses 1024 so a
        batch on a nearly full disk still records its ids); SQLite's default otherwise.
        """
        validate_batch_id(batch_id)
        file = Path(path)
        conn = await anyio.to_thread.run_sync(_connect, file, page_size)
        return cls(conn, file, batch_id)

    async def aclose(self) -> None:
        """Close the connection (the file stays)."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            self._conn.close()

        await self._run(close)

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        def locked() -> _T:
            with self._lock:
                return fn(*args)

        return await anyio.to_thread.run_sync(locked, limiter=self._limiter)

    def _tx(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full disk) may leave the transaction open: end it, so the
            # connection stays usable and a retry starts clean.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(self._tx, fn)

    async def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` on the store's worker thread (SQLite only).

        For readers that need SQL the protocol does not offer (the CLI journal's rows with
        their lines, the report). ``fn`` must only read; raw ``sqlite3`` errors propagate.
        """
        return await self._run(fn, self._conn)

    async def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` in one ``BEGIN IMMEDIATE`` transaction on the store's thread.

        SQLite only, for bookkeeping outside the job states (the CLI journal's input lines);
        state changes go through :meth:`claim_intent` and :meth:`transition`.
        """
        return await self._write(fn)

    def _event(self, conn: sqlite3.Connection, key: str | None, event: str, detail: Any) -> None:
        conn.execute(
            "INSERT INTO events (batch, at, key, event, detail) VALUES (?, ?, ?, ?, ?)",
            (self._batch, time.time(), key, event, None if detail is None else json.dumps(detail)),
        )

    # ------------------------------------------------------------------ meta

    async def get_meta(self, name: str) -> str | None:
        """A batch-level value, or ``None``."""

        def read() -> str | None:
            row = self._conn.execute(
                "SELECT value FROM store_meta WHERE batch = ? AND name = ?", (self._batch, name)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(read)

    async def set_meta(self, name: str, value: str) -> None:
        """Set a batch-level value."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO store_meta (batch, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(batch, name) DO UPDATE SET value = excluded.value",
                (self._batch, name, value),
            )

        await self._write(write)

    # ------------------------------------------------------------------ inputs

    def _add(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[str, str | None, str, str]]
    ) -> list[str]:
        # rows: (key, request JSON, state, kind); generation id is derived for "track" rows.
        now = time.time()
        (seq,) = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM jobs WHERE batch = ?", (self._batch,)
        ).fetchone()
        added = []
        for key, request, state, kind in rows:
            gid = key[3:] if kind == "track" else None
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (batch, key, seq, request, state, generation_id, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._batch, key, seq + 1, request, state, gid, now),
            )
            if cur.rowcount:
                seq += 1
                added.append(key)
                conn.execute(
                    "INSERT INTO work (batch, key, kind) VALUES (?, ?, ?)", (self._batch, key, kind)
                )
        if added:
            self._event(conn, None, "added", len(added))
        return added

    async def add_inputs(self, inputs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Register ``(key, body)`` pairs as pending jobs (idempotent); returns the new keys."""
        rows = [
            (key, json.dumps(dict(body)), JobState.PENDING.value, "submit") for key, body in inputs
        ]
        return await self._write(functools.partial(self._add, rows=rows))

    async def add_tracked(self, generation_ids: Iterable[str]) -> list[str]:
        """Register already-submitted generation ids to track; returns the new keys."""
        rows: list[tuple[str, str | None, str, str]] = [
            ("id:" + gid, None, JobState.SUBMITTED.value, "track") for gid in generation_ids
        ]
        return await self._write(functools.partial(self._add, rows=rows))

    # ------------------------------------------------------------------ transitions

    async def claim_intent(self, key: str, worker: str) -> bool:
        """``pending``/``refused`` -> ``submitting`` for ``worker``; ``True`` for one caller."""
        token = uuid.uuid4().hex

        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "UPDATE jobs SET state = ?, owner = ?, claim_token = ?, attempts = attempts + 1, "
                "intent_at = ?, updated_at = ?, error = NULL "
                "WHERE batch = ? AND key = ? AND state IN (?, ?)",
                (
                    JobState.SUBMITTING.value,
                    worker,
                    token,
                    now,
                    now,
                    self._batch,
                    key,
                    JobState.PENDING.value,
                    JobState.REFUSED.value,
                ),
            )
            if cur.rowcount:
                self._event(conn, key, "intent", {"worker": worker})
                return True
            if (
                conn.execute(
                    "SELECT 1 FROM jobs WHERE batch = ? AND key = ?", (self._batch, key)
                ).fetchone()
                is None
            ):
                raise StoreError(f"job {key} is not in batch {self._batch}")
            return False

        return await self._write(claim)

    async def transition(self, key: str, event: Event, **fields: Any) -> bool:
        """Apply ``event`` to ``key`` (see :data:`~veo_async.stores.TRANSITIONS`)."""
        return await self.apply(key, event, fields)

    async def apply(
        self,
        key: str,
        event: Event,
        fields: Mapping[str, Any],
        note: Mapping[str, Any] | None = None,
    ) -> bool:
        """:meth:`transition` with extra facts for the event's detail (SQLite only).

        ``note`` (e.g. ``{"polls": 4}``) goes into the audit trail, not into the job. The
        event is named after the event, except :data:`Event.FINISHED`, which is named after
        the state it reached (``completed`` or ``failed``).
        """
        fields = dict(fields)
        extra = dict(note or {})
        sources, target, values, rule = plan_transition(event, fields)

        def apply(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT state, generation_id, previous_ids FROM jobs WHERE batch = ? AND key = ?",
                (self._batch, key),
            ).fetchone()
            if row is None:
                raise StoreError(f"job {key} is not in batch {self._batch}")
            if JobState(row[0]) not in sources:
                return False
            now = time.time()
            sets = dict(values)
            sets["state"] = target.value
            sets["updated_at"] = now
            if rule.stamp:
                sets[rule.stamp] = now
            if event is Event.RESET:
                previous = json.loads(row[2])
                if row[1]:
                    previous.append(row[1])
                sets["previous_ids"] = json.dumps(previous)
                conn.execute(
                    "INSERT INTO work (batch, key, kind) VALUES (?, ?, 'submit')",
                    (self._batch, key),
                )
            columns = ", ".join(f"{name} = ?" for name in sets)
            conn.execute(
                f"UPDATE jobs SET {columns} WHERE batch = ? AND key = ?",
                (*sets.values(), self._batch, key),
            )
            detail = {k: v for k, v in fields.items() if v is not None}
            detail.update(extra)
            name = target.value if event is Event.FINISHED else event.value
            self._event(conn, key, name, detail)
            return True

        return await self._write(apply)

    async def note(self, key: str | None, event: str, detail: Any = None) -> None:
        """Append an event to the audit trail, changing no job (SQLite only)."""

        def write(conn: sqlite3.Connection) -> None:
            self._event(conn, key, event, detail)

        await self._write(write)

    # ------------------------------------------------------------------ reads

    def _job(self, row: sqlite3.Row | tuple[Any, ...]) -> StoredJob:
        (
            key,
            seq,
            request,
            state,
            gid,
            status,
            url,
            credits,
            error,
            file,
            sha,
            size,
            owner,
            attempts,
            previous,
            intent_at,
            submitted_at,
            finished_at,
            downloaded_at,
            updated_at,
        ) = row
        return StoredJob(
            key=key,
            request=None if request is None else json.loads(request),
            state=JobState(state),
            seq=seq,
            generation_id=gid,
            status=status,
            video_url=url,
            credits=credits,
            error=error,
            file=file,
            sha256=sha,
            size=size,
            owner=owner,
            attempts=attempts,
            previous_ids=json.loads(previous),
            intent_at=intent_at,
            submitted_at=submitted_at,
            finished_at=finished_at,
            downloaded_at=downloaded_at,
            updated_at=updated_at,
        )

    async def get(self, key: str) -> StoredJob | None:
        """One job, or ``None``."""

        def read() -> StoredJob | None:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE batch = ? AND key = ?", (self._batch, key)
            ).fetchone()
            return None if row is None else self._job(row)

        return await self._run(read)

    async def get_many(self, keys: Sequence[str]) -> list[StoredJob | None]:
        """Several jobs in one call on the store's thread, in the order of ``keys``."""
        if not keys:
            return []

        def read() -> list[StoredJob | None]:
            found: dict[str, StoredJob] = {}
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE batch = ? AND key IN ({marks})",
                    (self._batch, *chunk),
                ).fetchall()
                for row in rows:
                    job = self._job(row)
                    found[job.key] = job
            return [found.get(key) for key in keys]

        return await self._run(read)

    async def jobs(self) -> list[StoredJob]:
        """Every job of the batch, in order of arrival."""

        def read() -> list[StoredJob]:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE batch = ? ORDER BY seq", (self._batch,)
            ).fetchall()
            return [self._job(r) for r in rows]

        return await self._run(read)

    async def counts(self) -> dict[JobState, int]:
        """Jobs per state, zeros included."""

        def read() -> dict[JobState, int]:
            result = dict.fromkeys(JobState, 0)
            for state, n in self._conn.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE batch = ? GROUP BY state", (self._batch,)
            ):
                result[JobState(state)] = n
            return result

        return await self._run(read)

    async def events(self, key: str | None = None) -> list[tuple[float, str | None, str, Any]]:
        """The audit trail ``(time, key, event, detail)``, oldest first (SQLite only)."""

        def read() -> list[tuple[float, str | None, str, Any]]:
            sql = "SELECT at, key, event, detail FROM events WHERE batch = ?"
            args: tuple[Any, ...] = (self._batch,)
            if key is not None:
                sql, args = sql + " AND key = ?", (*args, key)
            return [
                (at, k, e, None if d is None else json.loads(d))
                for at, k, e, d in self._conn.execute(sql + " ORDER BY id", args)
            ]

        return await self._run(read)

    # ------------------------------------------------------------------ work leases

    async def take_work(self, worker: str, *, count: int = 1, wait: float = 0.0) -> list[WorkItem]:
        """Lease up to ``count`` untaken jobs; poll for up to ``wait`` s when there are none."""

        def take(conn: sqlite3.Connection) -> list[WorkItem]:
            rows = conn.execute(
                "SELECT id, key, kind FROM work WHERE batch = ? AND acked = 0 AND owner IS NULL "
                "ORDER BY id LIMIT ?",
                (self._batch, count),
            ).fetchall()
            now = time.time()
            for row in rows:
                conn.execute(
                    "UPDATE work SET owner = ?, renewed_at = ? WHERE id = ?", (worker, now, row[0])
                )
            return [WorkItem(str(r[0]), r[1], r[2]) for r in rows]

        deadline = time.monotonic() + wait
        while True:
            items = await self._write(take)
            if items or time.monotonic() >= deadline:
                return items
            await anyio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def heartbeat(self, worker: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Renew ``worker``'s leases; returns those another worker took over."""

        def renew(conn: sqlite3.Connection) -> list[WorkItem]:
            now = time.time()
            lost = []
            for item in items:
                cur = conn.execute(
                    "UPDATE work SET renewed_at = ? "
                    "WHERE id = ? AND batch = ? AND owner = ? AND acked = 0",
                    (now, int(item.id), self._batch, worker),
                )
                if not cur.rowcount:
                    lost.append(item)
            return lost

        return await self._write(renew)

    async def reclaim(self, worker: str, *, min_idle: float, count: int = 100) -> list[WorkItem]:
        """Take over leases not renewed for ``min_idle`` s."""

        def take(conn: sqlite3.Connection) -> list[WorkItem]:
            now = time.time()
            rows = conn.execute(
                "SELECT id, key, kind, owner FROM work WHERE batch = ? AND acked = 0 "
                "AND owner IS NOT NULL AND renewed_at <= ? ORDER BY id LIMIT ?",
                (self._batch, now - min_idle, count),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE work SET owner = ?, renewed_at = ? WHERE id = ?", (worker, now, row[0])
                )
                self._event(conn, row[1], "reclaimed", {"from": row[3], "by": worker})
            return [WorkItem(str(r[0]), r[1], r[2]) for r in rows]

        return await self._write(take)

    async def ack(self, worker: str, items: Sequence[WorkItem]) -> None:
        """End leases (the jobs need no worker any more)."""

        def done(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE work SET acked = 1 WHERE id = ? AND batch = ?",
                [(int(item.id), self._batch) for item in items],
            )

        await self._write(done)

    async def release(self, worker: str, items: Sequence[WorkItem]) -> None:
        """Give leases back untaken (acked or not), so the next :meth:`take_work` (any
        worker) gets them."""

        def give_back(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE work SET owner = NULL, renewed_at = NULL, acked = 0 "
                "WHERE id = ? AND batch = ? AND owner = ?",
                [(int(item.id), self._batch, worker) for item in items],
            )

        if items:
            await self._write(give_back)


def _connect(path: Path, page_size: int | None = None) -> sqlite3.Connection:
    """Open (and on first use set up) the store file; several processes may do it at once.

    Two processes opening a new file together can meet SQLite's "database is locked" while
    the journal mode changes or the schema is created: SQLite does not wait on its busy
    timeout there (it would deadlock), so the setup is tried again for a while.
    """
    deadline = time.monotonic() + 30.0
    while True:
        try:
            return _connect_once(path, page_size)
        except StoreError as exc:
            locked = isinstance(exc.__cause__, sqlite3.OperationalError) and "locked" in str(
                exc.__cause__
            )
            if not locked or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _connect_once(path: Path, page_size: int | None = None) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        if page_size is not None:  # only takes effect before the file's first write
            conn.execute(f"PRAGMA page_size={int(page_size)}")
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed intent or id is on disk before the call returns.
        conn.execute("PRAGMA synchronous=FULL")
        try:  # an old CLI journal: its tables move into the store's, in one transaction
            migrate_legacy(conn, _SCHEMA)
        except LegacyJournalError as exc:
            raise StoreError(f"the journal {path} {exc}") from None
        # One transaction for the whole schema: a handful of pages in the WAL, not one
        # transaction (and a copy of the schema page) per table.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + _SCHEMA
            + "INSERT OR IGNORE INTO store_meta (batch, name, value) "
            + f"VALUES ('', 'schema_version', '{SCHEMA_VERSION}');"
            + "COMMIT;"
        )
        row = conn.execute(
            "SELECT value FROM store_meta WHERE batch = '' AND name = 'schema_version'"
        ).fetchone()
        if row is not None:
            try:
                version = int(row[0])
            except (TypeError, ValueError):
                raise StoreError(
                    f"the job store {path} is damaged: schema_version is {row[0]!r}, not a "
                    "number; move the file aside (a CLI journal: run the batch into a new --out "
                    "folder)"
                ) from None
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} was written by a newer veo-async (schema {version}); upgrade"
                )
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"cannot open the job store {path}: {exc}") from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn
