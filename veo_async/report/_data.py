"""Read a batch folder (journal, else manifest) into plain report records, never writing to it.

The journal (an :class:`~veo_async.stores.SQLiteStore` file, batch ``cli``) is opened
**read-only** through SQLite's ``mode=ro`` URI and read with the journal's own readers
(:func:`~veo_async._journal_records.read_rows`, ``read_events``, ``read_meta``), without taking
the folder lock: a report can be made while a batch runs in the folder, and making one never
blocks a batch from starting. A journal written by an older veo-async is migrated in a copy in
memory, never in the folder. A folder without a journal
(copied elsewhere, or the journal deleted) is read from ``manifest.jsonl``; a folder with
neither is an error. Missing video files, a missing manifest, a crashed run (inputs left
``submitting``) and unreadable manifest lines are reported as notes, not errors.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._exceptions import VeoError
from .._journal import CLI_BATCH, JOURNAL_NAME, JournalRow
from .._journal_records import read_events, read_meta, read_rows
from .._pricing import UnknownModelPriceError, estimate_credits

__all__ = ["MANIFEST_NAME", "BatchReport", "ReportError", "ReportJob", "load_batch"]

MANIFEST_NAME = "manifest.jsonl"
"""The manifest ``veo-async batch`` writes next to its journal."""

#: Journal states of inputs that have not ended yet (the report calls them "open").
OPEN_STATES = frozenset({"pending", "submitting", "submitted", "completed"})

#: Generation statuses that mean the server started working on a job.
_RUNNING_STATUSES = frozenset({"generating", "active", "processing", "in_progress"})


class ReportError(VeoError):
    """The folder cannot be reported on (it does not exist, or holds no batch)."""


@dataclass
class ReportJob:
    """One input of a batch, as the report shows it."""

    line: int | None
    """Line of the input file; ``None`` for an input no longer in the file (it still holds
    a generation or a file, so it is shown)."""
    request: dict[str, Any]
    """The request body as journaled (long data URIs shortened)."""
    state: str
    """Journal state: pending, submitting, submitted, uncertain, refused, failed, completed,
    downloaded."""
    status: str | None = None
    """Last generation status the SDK saw."""
    generation_id: str | None = None
    """The generation id, when one exists."""
    previous_ids: list[str] = field(default_factory=list)
    """Ids of earlier attempts (resubmissions)."""
    video_url: str | None = None
    """The CDN URL of the video (no key in it)."""
    file: str | None = None
    """The downloaded file, relative to the batch folder."""
    file_present: bool = False
    """Whether ``file`` exists in the folder now."""
    credits: float | None = None
    """Credits the server reported."""
    error: str | None = None
    """Why the input failed or is not done."""
    intent_at: float | None = None
    """When the create was about to be sent (epoch seconds)."""
    submitted_at: float | None = None
    """When the create returned an id."""
    started_at: float | None = None
    """When the SDK first saw the server generating it (only when status events were
    recorded)."""
    finished_at: float | None = None
    """When the SDK noticed it had finished."""
    downloaded_at: float | None = None
    """When the video was on disk."""
    creates: int | None = None
    """Create requests journaled for this input (every attempt)."""
    polls: int | None = None
    """Status requests for this input, when the journal recorded them."""
    estimate: float | None = None
    """Estimated credits (the price table) for inputs never sent (pending, refused)."""

    @property
    def prompt(self) -> str:
        """The prompt, or an empty string."""
        value = self.request.get("prompt")
        return value if isinstance(value, str) else ""

    @property
    def model(self) -> str:
        """The model id (``veo2`` when the body has none)."""
        value = self.request.get("model")
        return value if isinstance(value, str) else "veo2"

    @property
    def kind(self) -> str:
        """``done`` (video on disk), ``ready`` (completed, not downloaded), ``failed``
        (failed, refused, uncertain) or ``open`` (not finished)."""
        if self.state == "downloaded":
            return "done" if self.file_present else "ready"
        if self.state == "completed":
            return "ready"
        if self.state in ("failed", "refused", "uncertain"):
            return "failed"
        return "open"

    @property
    def file_href(self) -> str | None:
        """``file`` as a relative URL (percent-encoded), or ``None``."""
        return None if not self.file else quote(self.file.replace("\\", "/"))


@dataclass
class BatchReport:
    """Everything the report page shows about one batch folder."""

    folder: Path
    """The batch folder."""
    jobs: list[ReportJob]
    """Every input, by line."""
    origin: str
    """``journal`` or ``manifest``: where the records came from."""
    source: str | None = None
    """The input file the batch was made from, when known."""
    target: str | None = None
    """The service that made it (a base URL, or ``emulate``)."""
    notes: list[str] = field(default_factory=list)
    """Things the reader should know (a crashed run, missing files, ...)."""
    made_at: float = field(default_factory=time.time)
    """When the report was made."""

    def counts(self) -> dict[str, int]:
        """Inputs per journal state."""
        return dict(sorted(Counter(job.state for job in self.jobs).items()))

    @property
    def credits(self) -> float:
        """Credits the server reported, summed."""
        return math.fsum(j.credits for j in self.jobs if j.credits is not None)

    @property
    def estimated_open_credits(self) -> float | None:
        """Estimated credits of inputs not charged yet (``None`` if a model has no price)."""
        open_jobs = [j for j in self.jobs if j.state in ("pending", "refused")]
        if any(j.estimate is None for j in open_jobs):
            return None
        return math.fsum(j.estimate or 0.0 for j in open_jobs)

    def span(self) -> tuple[float, float] | None:
        """(first, last) recorded time over all jobs, or ``None`` when nothing has a time."""
        times = [t for job in self.jobs for t in _times(job)]
        return (min(times), max(times)) if times else None

    @property
    def wall_seconds(self) -> float | None:
        """From the first create to the last recorded event."""
        span = self.span()
        return None if span is None else span[1] - span[0]

    @property
    def creates_per_job(self) -> float | None:
        """Create requests per submitted input (resubmissions count)."""
        counted = [j.creates for j in self.jobs if j.creates]
        return sum(counted) / len(counted) if counted else None

    @property
    def polls_per_job(self) -> float | None:
        """Status requests per input, when the journal recorded them."""
        counted = [j.polls for j in self.jobs if j.polls is not None]
        return sum(counted) / len(counted) if counted else None


def _times(job: ReportJob) -> list[float]:
    values = (
        job.intent_at,
        job.submitted_at,
        job.started_at,
        job.finished_at,
        job.downloaded_at,
    )
    return [t for t in values if isinstance(t, (int, float)) and math.isfinite(t)]


# --------------------------------------------------------------------------- loading


def load_batch(folder: str | os.PathLike[str]) -> BatchReport:
    """Read the batch in ``folder`` (journal first, else ``manifest.jsonl``) without writing.

    Raises :class:`ReportError` when the folder does not exist or holds neither file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ReportError(f"{root} is not a folder")
    notes: list[str] = []
    report: BatchReport | None = None
    journal_path = root / JOURNAL_NAME
    if journal_path.is_file():
        try:
            report = _from_journal(root, journal_path)
        except (sqlite3.Error, ValueError, KeyError) as exc:
            notes.append(f"the journal could not be read ({exc}); using {MANIFEST_NAME}")
    manifest = root / MANIFEST_NAME
    if report is None:
        if not manifest.is_file():
            raise ReportError(
                f"{root} holds no batch: neither {JOURNAL_NAME} nor {MANIFEST_NAME} is there "
                "(make one with: veo-async batch FILE --out FOLDER)"
            )
        report = _from_manifest(root, manifest, notes)
    elif not manifest.is_file():
        notes.append(
            f"there is no {MANIFEST_NAME} (the run may have crashed before writing it); "
            "this report is read from the journal"
        )
    report.notes[:0] = notes
    _annotate(report)
    return report


def job_label(job: ReportJob) -> str:
    """``#12`` for input line 12; ``(not in file)`` for an input removed from the file."""
    return "(not in file)" if job.line is None else f"#{job.line}"


def _order(job: ReportJob) -> tuple[bool, int]:
    """Input-file order; inputs no longer in the file last."""
    return (job.line is None, job.line or 0)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    # With no ``-wal`` file the database was closed cleanly and holds everything: open it
    # immutable, which creates no ``-shm``/``-wal`` files in the folder. With one (a crashed
    # or running batch), read through the WAL read-only so its committed rows are seen.
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    uri = "file:" + quote(str(path.resolve())) + "?" + mode
    conn = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _in_memory_migrated(conn: sqlite3.Connection) -> sqlite3.Connection:
    """An old journal, copied into memory and migrated there (the folder is never written)."""
    from ..stores._legacy import migrate_legacy
    from ..stores._sqlite import _SCHEMA

    memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        conn.backup(memory)
        migrate_legacy(memory, _SCHEMA)
    except BaseException:
        memory.close()
        raise
    return memory


def _from_journal(root: Path, path: Path) -> BatchReport:
    from ..stores._legacy import is_legacy

    conn = _connect_read_only(path)
    try:
        if is_legacy(conn):
            old, conn = conn, _in_memory_migrated(conn)
            old.close()
        rows = read_rows(conn, CLI_BATCH, path)
        events = read_events(conn, CLI_BATCH)
        source = read_meta(conn, CLI_BATCH, "source")
        target = read_meta(conn, CLI_BATCH, "target")
    finally:
        conn.close()
    per_key: dict[int, list[tuple[float, str, Any]]] = {}
    for at, key, event, detail in events:
        if key is not None:
            per_key.setdefault(key, []).append((at, event, detail))
    jobs = [_job_from_row(root, row, per_key.get(row.key, [])) for row in rows]
    jobs.sort(key=_order)
    return BatchReport(folder=root, jobs=jobs, origin="journal", source=source, target=target)


def _job_from_row(
    root: Path, row: JournalRow, events: Sequence[tuple[float, str, Any]]
) -> ReportJob:
    job = ReportJob(
        line=row.line,
        request=dict(row.request),
        state=row.state.value,
        status=row.status,
        generation_id=row.generation_id,
        previous_ids=list(row.previous_ids),
        video_url=row.video_url,
        file=row.file,
        credits=_number(row.credits),
        error=row.error,
        intent_at=row.intent_at,
        submitted_at=row.submitted_at,
        finished_at=row.finished_at,
        downloaded_at=row.downloaded_at,
    )
    creates = sum(1 for _, event, _ in events if event == "intent")
    job.creates = creates or None
    job.polls = _read_events(job, events)
    if job.intent_at is None and job.submitted_at is not None:
        job.intent_at = job.submitted_at
    return job


def _read_events(job: ReportJob, events: Sequence[tuple[float, str, Any]]) -> int | None:
    """Set ``job.started_at`` from the events; return the polls they count (``None``: none).

    Forward compatible: a journal that records statuses or poll counts in its event details
    gets a "started" mark and requests per job; today's journal records neither.
    """
    polls: int | None = None
    for at, event, detail in events:
        if not isinstance(detail, Mapping):
            continue
        status = str(detail.get("status", "")).lower()
        if event == "status" and job.started_at is None and status in _RUNNING_STATUSES:
            job.started_at = at
        count = detail.get("polls")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            polls = (polls or 0) + count
    return polls


def _from_manifest(root: Path, path: Path, notes: list[str]) -> BatchReport:
    jobs: list[ReportJob] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for text in fh:
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
                jobs.append(_job_from_entry(entry))
            except (ValueError, TypeError, KeyError):
                bad += 1
    if bad:
        notes.append(f"{bad} line(s) of {MANIFEST_NAME} could not be read and are left out")
    notes.append(
        f"no journal in this folder: read from {MANIFEST_NAME}, which has no timings (no timeline)"
    )
    jobs.sort(key=_order)
    return BatchReport(folder=root, jobs=jobs, origin="manifest")


def _job_from_entry(entry: Any) -> ReportJob:
    if not isinstance(entry, Mapping):
        raise TypeError("not an object")
    line = entry["line"]
    if not isinstance(line, int) or isinstance(line, bool):
        raise TypeError("line is not an integer")
    request = entry.get("request")
    previous = entry.get("previous_generation_ids")
    return ReportJob(
        line=line,
        request=dict(request) if isinstance(request, Mapping) else {},
        state=_text(entry.get("state")) or "pending",
        status=_text(entry.get("status")),
        generation_id=_text(entry.get("generation_id")),
        previous_ids=[str(p) for p in previous] if isinstance(previous, list) else [],
        video_url=_text(entry.get("video_url")),
        file=_text(entry.get("file")),
        credits=_number(entry.get("credits")),
        error=_text(entry.get("error")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _annotate(report: BatchReport) -> None:
    """File presence, estimates, and notes about a crashed or partial run."""
    root = report.folder.resolve()
    missing = [job_label(job) for job in report.jobs if not _check_file(job, report.folder, root)]
    for job in report.jobs:
        if job.credits is None and job.state in ("pending", "refused"):
            job.estimate = _estimate(job)
    if missing:
        shown = ", ".join(missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        report.notes.append(
            f"{len(missing)} downloaded video file(s) are missing from the folder "
            f"({shown}{more}); rerun the batch to download them again"
        )
    report.notes.extend(_unfinished_notes(report.jobs))


def _check_file(job: ReportJob, folder: Path, root: Path) -> bool:
    """Set ``job.file_present``; ``False`` when the job names a file that is not there.

    A file name from a manifest is data: it must stay inside the folder (one outside is
    dropped from the job).
    """
    if not job.file:
        return True
    path = (folder / job.file).resolve()
    inside = path == root or root in path.parents
    job.file_present = inside and path.is_file()
    if not job.file_present and not inside:
        job.file = None
    return job.file_present


def _estimate(job: ReportJob) -> float | None:
    """The price table's credits for an input not yet charged (``None``: unknown model)."""
    try:
        return estimate_credits(job.request)
    except (UnknownModelPriceError, TypeError):
        return None


def _unfinished_notes(jobs: Sequence[ReportJob]) -> list[str]:
    """Notes about creates in flight (a crash) and inputs not finished (a partial run)."""
    notes = []
    interrupted = [j.line for j in jobs if j.state == "submitting"]
    if interrupted:
        notes.append(
            f"{len(interrupted)} input(s) were being submitted when the run stopped "
            "(a crashed or running batch); the next run marks them uncertain"
        )
    open_jobs = [j for j in jobs if j.kind == "open"]
    if open_jobs:
        notes.append(
            f"{len(open_jobs)} input(s) are not finished: a partial run, or one still going; "
            "rerun the same batch command to resume"
        )
    return notes
