"""The durable batch journal: nothing lost, nothing paid twice.

A batch keeps its journal in its output folder (``.veo-async-journal.sqlite3``): an
:class:`~veo_async.stores.SQLiteStore` file (WAL mode, ``synchronous=FULL``) holding one batch,
``cli`` (:data:`CLI_BATCH`). :class:`Journal` is the command line's adapter over that store:
every write is one of the store's transactions, checked by the store's transition table
(:data:`~veo_async.stores.TRANSITIONS`) and run on the store's worker thread, never on the event
loop. So the same file is readable and resumable by the library::

    veo-async status --store sqlite:///OUT/.veo-async-journal.sqlite3 --batch-id cli
    client.batch(inputs, store="sqlite:///OUT/.veo-async-journal.sqlite3",
                 store_options=StoreOptions(batch_id="cli"))

Each input is a job keyed by *content* (:func:`~veo_async.stores.input_keys`: the SHA-256 of
its request body, ``.n`` for the n-th identical request). Its line in the current input file
is kept beside it (the store's ``job_lines``), updated on every run, so inserting, removing or
moving lines never hands one input's generation to another. The journal numbers inputs by the
job's ``seq`` (:attr:`JournalRow.key`). Each input moves through these states, every move one
committed transaction::

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

The batch's meta values hold a fingerprint of the input file's requests (so a resume with a
different file is detected), its name, and the service that made the generations (so emulated
results are never taken for real ones). The store's ``events`` table is the audit trail. A
journal written by an older veo-async (its own tables, schema 1 or 2) is moved into the store's
tables when it is opened, in one transaction (:mod:`veo_async.stores._legacy`).

Every failure to read or write the journal is a :class:`JournalError` with one line of text
naming the file or folder (a full disk says so), never a raw ``sqlite3`` error. A reserve file
(``<journal>.reserve``) is released when the disk fills up, so the ids of creates already sent
can still be recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ._journal_records import (
    JournalError,
    JournalRow,
    JournalState,
    _DiskFull,
    _is_full,
    _lock_folder,
    _unlock,
    damaged,
    disk_problem,
    manifest_entry,
    read_events,
    read_meta,
    read_rows,
    write_manifest,
)
from .stores._base import Event, StoreError
from .stores._legacy import CLI_BATCH
from .stores._sqlite import SQLiteStore

__all__ = [
    "CLI_BATCH",
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "JournalRow",
    "JournalState",
    "disk_problem",
    "manifest_entry",
    "write_manifest",
]

_T = TypeVar("_T")

JOURNAL_NAME = ".veo-async-journal.sqlite3"
#: Bytes set aside next to the journal while it is open (``<journal>.reserve``): when the disk
#: fills up, the reserve is released so the journal can still record the ids of creates that
#: were already sent (a full disk must never lose an id that was paid for).
RESERVE_BYTES = 256 * 1024

_INTERRUPTED = (
    "the process stopped while the create request was in flight; it may or may not have "
    "started a billed generation"
)


def _worker() -> str:
    """This process's name as the owner of the intents it takes."""
    return f"veo-async batch@{socket.gethostname()}:{os.getpid()}"


class Journal:
    """A batch journal in ``folder``: ``journal = await Journal.open(folder)``, then
    ``await journal.close()`` (or ``async with``).

    Every method is a coroutine running its SQL on the store's worker thread; every
    ``record_*`` method is one transaction of :attr:`store`.
    """

    def __init__(self, store: SQLiteStore, path: Path, lock_file: Any | None) -> None:
        self.store = store
        """The :class:`~veo_async.stores.SQLiteStore` the journal writes through."""
        self._lock_file = lock_file
        self._keys: dict[int, str] = {}
        self.worker = _worker()
        self.path = path
        self.folder = path.parent
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.disk_full = False
        """Set once a write found the disk full (the reserve was released): stop submitting."""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        name: str = JOURNAL_NAME,
        reserve: int = RESERVE_BYTES,
    ) -> Journal:
        """Open (or create) the journal in ``folder``; only one process may hold it at a time.

        An old journal is migrated into the store's tables first. ``reserve`` bytes are set
        aside on the same disk (released if the disk fills up, so the ids of creates in flight
        can still be recorded); when even that much room is missing, the open fails before
        anything is sent.
        """
        root = Path(folder)
        path = root / name
        lock_file = await anyio.to_thread.run_sync(_prepare_folder, root, name)
        try:
            try:
                store = await SQLiteStore.open(path, batch_id=CLI_BATCH, page_size=PAGE_SIZE)
            except StoreError as exc:
                cause = exc.__cause__
                if isinstance(cause, (sqlite3.Error, OSError)):
                    raise JournalError(
                        f"cannot open the journal {path}: {disk_problem(root, cause)}"
                    ) from None
                raise JournalError(str(exc)) from None
            except OSError as exc:
                raise JournalError(
                    f"cannot open the journal {path}: {disk_problem(root, exc)}"
                ) from None
            journal = cls(store, path, lock_file)
            await store.read(_bound_the_wal)
            if reserve:
                try:
                    await anyio.to_thread.run_sync(journal._make_reserve, reserve)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await store.aclose()
                    raise
        except BaseException:
            _unlock(lock_file)
            raise
        return journal

    async def close(self) -> None:
        """Close the store, drop the reserve and release the folder lock."""
        try:
            with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error):
                await self.store.aclose()
        finally:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            _unlock(self._lock_file)
            self._lock_file = None

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    # ------------------------------------------------------------------ plumbing

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return await self.store.read(fn)
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot read the journal {self.path}: {disk_problem(self.folder, exc)}"
            ) from None

    async def _write_once(self, op: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await op()
        except (sqlite3.Error, OSError) as exc:
            words = f"cannot write the journal {self.path.name}: {disk_problem(self.folder, exc)}"
            if _is_full(exc):
                raise _DiskFull(words) from None
            raise JournalError(words) from None
        except StoreError as exc:
            raise JournalError(str(exc)) from None
        except ValueError as exc:  # a damaged state value met by the store
            raise JournalError(
                f"the journal {self.path} is damaged: {exc}; move the folder aside and run the "
                "batch into a new --out folder"
            ) from None

    async def _write(self, op: Callable[[], Awaitable[_T]]) -> _T:
        """One store write; on a full disk, release the reserve and try once more."""
        try:
            return await self._write_once(op)
        except _DiskFull:
            if not self._release_reserve():
                raise
            return await self._write_once(op)

    async def _store_key(self, key: int) -> str:
        """The store's key of input ``key``."""
        known = self._keys.get(key)
        if known is not None:
            return known

        def find(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT key FROM jobs WHERE batch = ? AND seq = ?", (CLI_BATCH, key)
            ).fetchone()
            return None if row is None else str(row[0])

        found = await self._read(find)
        if found is None:
            raise JournalError(f"input {key} is not in the journal")
        self._keys[key] = found
        return found

    async def _apply(
        self, key: int, event: Event, note: Mapping[str, Any] | None = None, **fields: Any
    ) -> bool:
        """One transition of the store's table for input ``key``; whether it was applied."""
        store_key = await self._store_key(key)
        return await self._write(lambda: self.store.apply(store_key, event, fields, note))

    # ------------------------------------------------------------------ meta

    async def get_meta(self, key: str) -> str | None:
        """A meta value of the batch (``fingerprint``, ``source``, ``target``), or ``None``."""
        return await self._read(lambda conn: read_meta(conn, CLI_BATCH, key))

    async def set_meta(self, key: str, value: str) -> None:
        """Set a meta value of the batch."""
        await self._write(lambda: self.store.set_meta(key, value))

    # ------------------------------------------------------------------ inputs

    async def match_inputs(self, inputs: Iterable[tuple[int, Mapping[str, Any], str]]) -> list[int]:
        """Match the inputs ``(line, body, body_sha256)`` to the journal; returns their keys.

        Matching is by content, never by position: the n-th input with a given body SHA-256
        is the store's job ``sha256`` (n = 1) or ``sha256.n``. A match takes the input's
        current line (and its full request body); an input with no match is added as
        ``pending``. Jobs that match nothing lose their line (no longer in the file): those
        never sent (``pending``/``refused`` with no earlier generation) are dropped, the others
        (they hold a generation or a file) are kept for the manifest.
        """
        now = time.time()
        seen: Counter[str] = Counter()
        wanted: list[tuple[int, str, str]] = []
        for line, body, digest in inputs:
            seen[digest] += 1
            n = seen[digest]
            wanted.append((line, digest if n == 1 else f"{digest}.{n}", _dumps(body)))
        path = self.path

        def match(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            conn.execute("DELETE FROM job_lines WHERE batch = ?", (CLI_BATCH,))
            (top,) = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM jobs WHERE batch = ?", (CLI_BATCH,)
            ).fetchone()
            top = max(int(top), int(read_meta(conn, CLI_BATCH, "last_seq") or 0))
            keys: list[tuple[int, str]] = []
            for line, key, request in wanted:
                row = conn.execute(
                    "SELECT seq, request FROM jobs WHERE batch = ? AND key = ?", (CLI_BATCH, key)
                ).fetchone()
                if row is not None:
                    seq = _check_request(row, path)
                    if row[1] != request:
                        conn.execute(
                            "UPDATE jobs SET request = ? WHERE batch = ? AND key = ?",
                            (request, CLI_BATCH, key),
                        )
                else:
                    top += 1
                    seq = top
                    conn.execute(
                        "INSERT INTO jobs (batch, key, seq, request, state, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (CLI_BATCH, key, seq, request, JournalState.PENDING.value, now),
                    )
                    conn.execute(
                        "INSERT INTO work (batch, key, kind) VALUES (?, ?, 'submit')",
                        (CLI_BATCH, key),
                    )
                    conn.execute(
                        "INSERT INTO events (batch, at, key, event, detail) "
                        "VALUES (?, ?, ?, 'added', ?)",
                        (CLI_BATCH, now, key, _dumps({"line": line})),
                    )
                conn.execute(
                    "INSERT INTO job_lines (batch, key, line) VALUES (?, ?, ?)",
                    (CLI_BATCH, key, line),
                )
                keys.append((seq, key))
            # Never-sent inputs no longer in the file are forgotten (their work item too);
            # the numbers they had are never given out again (last_seq).
            gone = (
                "FROM jobs WHERE batch = ? AND state IN (?, ?) AND generation_id IS NULL "
                "AND previous_ids = '[]' AND file IS NULL AND key NOT IN "
                "(SELECT key FROM job_lines WHERE batch = ?)"
            )
            args = (
                CLI_BATCH,
                JournalState.PENDING.value,
                JournalState.REFUSED.value,
                CLI_BATCH,
            )
            conn.execute(
                f"DELETE FROM work WHERE batch = ? AND key IN (SELECT key {gone})",
                (CLI_BATCH, *args),
            )
            conn.execute(f"DELETE {gone}", args)
            conn.execute(
                "INSERT INTO store_meta (batch, name, value) VALUES (?, 'last_seq', ?) "
                "ON CONFLICT(batch, name) DO UPDATE SET value = excluded.value",
                (CLI_BATCH, str(top)),
            )
            return keys

        matched = await self._write(lambda: self.store.write(match))
        self._keys.update(matched)
        return [seq for seq, _ in matched]

    async def rows(self) -> list[JournalRow]:
        """Every input: those in the current file by line, then the ones no longer in it."""
        rows = await self._read(lambda conn: read_rows(conn, CLI_BATCH, self.path))
        self._keys.update((r.key, r.store_key) for r in rows)
        return rows

    async def row(self, key: int) -> JournalRow | None:
        """One input by key, or ``None``."""
        rows = await self._read(lambda conn: read_rows(conn, CLI_BATCH, self.path, key))
        return rows[0] if rows else None

    async def events(self, key: int | None = None) -> list[tuple[float, int | None, str, Any]]:
        """The audit trail ``(time, input key, event, detail)``, oldest first."""
        return await self._read(lambda conn: read_events(conn, CLI_BATCH, key))

    # ------------------------------------------------------------------ transitions

    async def recover_interrupted(self) -> list[int]:
        """At startup: inputs left ``submitting`` by a dead process become ``uncertain``."""
        stuck = [r.key for r in await self.rows() if r.state is JournalState.SUBMITTING]
        return [key for key in stuck if await self._apply(key, Event.ABANDONED, error=_INTERRUPTED)]

    async def record_intent(self, key: int) -> None:
        """About to send the create for ``key`` (committed before the request goes out).

        The store's one-winner step ``pending``/``refused`` -> ``submitting``: if another
        process (a library batch on the same file) took it first, the create is not sent
        (:class:`~veo_async.batch.InputTaken`).
        """
        store_key = await self._store_key(key)
        if not await self._write(lambda: self.store.claim_intent(store_key, self.worker)):
            from .batch import InputTaken

            raise InputTaken(f"input {key} was taken by another process")

    async def record_submitted(self, key: int, generation_id: str, status: str | None) -> None:
        """The create for ``key`` returned ``generation_id``."""
        await self._apply(key, Event.SUBMITTED, generation_id=generation_id, status=status)

    async def record_not_sent(self, key: int) -> bool:
        """The create for ``key`` was never sent after all (cancelled before it went out).

        Moves ``submitting`` back to ``pending``; any other state is left alone. Returns
        whether the row changed.
        """
        return await self._apply(key, Event.NOT_SENT)

    async def record_uncertain(self, key: int, error: str) -> None:
        """The create for ``key`` may or may not have made a generation."""
        await self._apply(key, Event.UNCERTAIN, error=error)

    async def record_refused(self, key: int, error: str) -> None:
        """The create for ``key`` was refused; nothing was created (safe to submit again)."""
        await self._apply(key, Event.REFUSED, error=error)

    async def record_finished(
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
        await self._apply(
            key,
            Event.FINISHED,
            None if polls is None else {"polls": polls},
            generation_id=generation_id,
            status=status,
            video_url=video_url,
            credits=credits,
            error=error,
        )

    async def record_status(self, key: int, status: str) -> None:
        """The generation of ``key`` was seen in ``status`` (an event only; no state change).

        The batch records the first time a job is seen running (``generating``), which the
        report shows as "started" on its timeline.
        """
        store_key = await self._store_key(key)
        await self._write(lambda: self.store.note(store_key, "status", {"status": status}))

    async def record_still_running(
        self, key: int, generation_id: str, error: str, polls: int | None = None
    ) -> None:
        """Waiting for ``key`` ran out of time; its id stays tracked for the next run."""
        await self._apply(
            key,
            Event.STILL_RUNNING,
            None if polls is None else {"polls": polls},
            generation_id=generation_id,
            error=error,
        )

    async def record_downloaded(self, key: int, *, file: str, sha256: str, size: int) -> None:
        """The video of ``key`` is on disk at ``file`` (relative to the journal's folder)."""
        await self._apply(key, Event.DOWNLOADED, file=file, sha256=sha256, size=size)

    async def record_download_failed(self, key: int, error: str) -> None:
        """The video of ``key`` could not be downloaded (the next run tries again)."""
        await self._apply(key, Event.DOWNLOAD_FAILED, error=error)

    async def record_file_lost(self, key: int, reason: str) -> None:
        """A downloaded file is missing or does not match its SHA-256: download it again."""
        await self._apply(key, Event.FILE_LOST, error=reason)

    async def reset_for_resubmit(self, key: int, reason: str) -> None:
        """Make ``key`` submittable again (``--resubmit-uncertain``, ``--retry-failed``)."""
        await self._apply(key, Event.RESET, {"reason": reason})


#: Bytes per database page of a new journal: every transaction (an intent, an id) writes its
#: few pages to the WAL, so small pages keep the journal small on a nearly full disk.
PAGE_SIZE = 1024
#: Pages the WAL may hold before it is copied into the database (SQLite's default is 1000
#: pages): with 1 KiB pages a batch folder on a nearly full disk then needs about the
#: database's size plus 128 KiB for its journal, never megabytes.
WAL_PAGES = 128


def _bound_the_wal(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")


def _prepare_folder(root: Path, name: str) -> Any | None:
    """Create the folder and take its lock (one process per folder)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"cannot create the folder {disk_problem(root, exc)}") from None
    try:
        return _lock_folder(root / (name + ".lock"))
    except OSError as exc:
        raise JournalError(f"cannot lock the folder: {disk_problem(root, exc)}") from None


def _dumps(value: Any) -> str:
    return json.dumps(value)


def _check_request(row: tuple[Any, ...], path: Path) -> int:
    """A matched job's seq, after checking its stored request is readable."""
    seq, raw = row
    try:
        if raw is not None and not isinstance(json.loads(raw), dict):
            raise ValueError("not a JSON object")
    except (ValueError, TypeError, RecursionError) as exc:
        raise damaged(path, seq, "request", exc) from None
    return int(seq)
