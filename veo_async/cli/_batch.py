"""``veo-async batch``: many inputs, bounded, journaled, resumable, downloaded as they finish.

The flow of one run::

    read + validate every input (nothing sent if any is bad)
      -> open the journal in --out, check it belongs to these inputs, recover a crashed run
      -> plan: poll known ids again, download missing files, submit never-submitted inputs
      -> Batch (engine) ──results──▶ journal (observer) ──ok──▶ download workers ──▶ journal
      -> summary + manifest.jsonl (rewritten from the journal)

The engine's observer hooks write the journal: the intent before each create, the id after
it, each result. Signals: the first SIGINT/SIGTERM stops submitting, waits until the creates
already in flight have their ids recorded, then cancels the rest (polls and downloads resume
next run); a second one cancels at once. Either way every journal write is a transaction.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import math
import os
import re
import shlex
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._client import AsyncVeoClient
from .._download import safe_filename
from .._engine import BatchCounts, BatchItem, BatchResult, JobEvent, NullObserver
from .._exceptions import (
    CreateOutcomeUnknownError,
    GenerationFailedError,
    NotFoundError,
    VeoError,
)
from .._inputs import (
    MEDIA_FIELDS,
    InputError,
    ParsedInput,
    body_hash,
    load_inputs,
    media_to_data_uri,
    redact_body,
    request_fingerprint,
)
from .._journal import (
    Journal,
    JournalError,
    JournalRow,
    JournalState,
    disk_problem,
    write_manifest,
)
from .._models import Generation, VideoRequest
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Settings,
    echo_err,
    echo_json,
    open_client,
    stderr_is_tty,
)

__all__ = ["BatchOptions", "run_batch_command", "video_filename"]

MANIFEST_NAME = "manifest.jsonl"
_T = TypeVar("_T")


@dataclass
class BatchOptions:
    """Everything the ``batch`` command was asked to do."""

    prompts: str
    out: Path
    fmt: Any = None
    allow_media_outside: bool = False
    model: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 16
    rate: float | None = None
    download_concurrency: int = 4
    job_timeout: float | None = 1000.0
    max_generations: int | None = None
    force: bool = False
    resubmit_uncertain: bool = False
    retry_failed: bool = False
    dry_run: bool = False
    progress_interval: float = 10.0
    argv: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The input's display name."""
        return "<stdin>" if self.prompts == "-" else self.prompts

    def resume_command(self) -> str:
        """The command to run again to resume this batch."""
        if self.argv:
            return shlex.join(["veo-async", *self.argv])
        return f"veo-async batch {shlex.quote(self.prompts)} --out {shlex.quote(str(self.out))}"


def video_filename(line: int, prompt: str, generation_id: str) -> str:
    """``0007-a-red-fox-in-snow-1a2b3c4d.mp4``: line, prompt words, short id; safe and unique."""
    slug = safe_filename(prompt.lower(), suffix="", max_length=48)
    short = safe_filename(generation_id, suffix="", max_length=8)
    return f"{line:04d}-{slug}-{short}.mp4"


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file, or ``None`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(functools.partial(fh.read, 1024 * 1024), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """What this run will do, decided from the inputs and the journal."""

    inputs: list[ParsedInput]
    submit: list[tuple[ParsedInput, int]] = field(default_factory=list)
    """Inputs to submit, with their journal keys."""
    track: list[tuple[ParsedInput, int, str]] = field(default_factory=list)
    """Inputs with a known generation id to poll again: ``(input, key, id)``."""
    lines: dict[int, int] = field(default_factory=dict)
    """The input file's line of each journal key in this run."""
    resumed: bool = False
    notes: list[str] = field(default_factory=list)


def _describe_target(target: str) -> str:
    return "the emulator (--emulate)" if target == "emulate" else target


def _has_results(row: JournalRow) -> bool:
    """Whether a journal input holds anything a service made (an id, a file, maybe a charge)."""
    if row.generation_id or row.previous_ids or row.file:
        return True
    return row.state not in (JournalState.PENDING, JournalState.REFUSED)


def _check_target(journal: Journal, settings: Settings, options: BatchOptions) -> None:
    """Refuse to mix results of two services (the emulator's samples are not real videos)."""
    target = settings.target
    stored = journal.get_meta("target")
    if stored is None or stored == target:
        return
    if not any(_has_results(row) for row in journal.rows()):
        return  # nothing was made there yet: nothing to mix up
    if "emulate" in (stored, target):
        raise CliError(
            f"{options.out} holds results made by {_describe_target(stored)}, but this run "
            f"talks to {_describe_target(target)}. Emulated videos are samples, not videos "
            "of your prompts, so the two never share a folder. Use another --out folder "
            f"(or delete {options.out} to start over); --force does not override this."
        )
    if not options.force:
        raise CliError(
            f"the generations in {options.out} were made on {stored}, but this run "
            f"talks to {target}; their ids would not be found there. Run with the same "
            "--base-url/--endpoint, use another --out folder, or pass --force if this is "
            "the same service under another address."
        )


def _prepare(
    journal: Journal,
    inputs: list[ParsedInput],
    settings: Settings,
    options: BatchOptions,
) -> Plan:
    """Check the journal against the inputs, recover a crashed run, and plan this run."""
    plan = Plan(inputs=inputs)
    fingerprint = request_fingerprint(inputs)
    stored = journal.get_meta("fingerprint")
    plan.resumed = stored is not None
    if stored is not None and stored != fingerprint:
        source = journal.get_meta("source") or "another file"
        if not options.force:
            raise CliError(
                f"{options.out} already holds a batch made from different inputs "
                f"(from {source}; {len(journal.rows())} inputs). Resuming it with "
                f"{options.source} could mix them up. Use another --out folder, or pass "
                "--force to continue with the new inputs (inputs are matched by their "
                "request, not their line: ones already submitted keep their generations, "
                "new or changed ones are submitted)."
            )
        plan.notes.append(f"the inputs changed since the journal was made ({source}); --force")
    _check_target(journal, settings, options)
    keys = journal.match_inputs(
        [
            (item.line, redact_body(item.request.to_body()), body_hash(item.request))
            for item in inputs
        ]
    )
    plan.lines = {key: item.line for key, item in zip(keys, inputs, strict=True)}
    for key in journal.recover_interrupted():
        where = f"{options.source}:{plan.lines[key]}" if key in plan.lines else options.source
        plan.notes.append(
            f"{where}: the previous run stopped while its create request was in flight; it "
            "may or may not have been created (uncertain, not resubmitted)"
        )
    gone = [row for row in journal.rows() if row.line is None]
    if gone:
        plan.notes.append(
            f"{len(gone)} input(s) of the journal are no longer in {options.source}; their "
            "generations and files stay in the folder and the manifest (with no line)"
        )
    journal.set_meta("fingerprint", fingerprint)
    journal.set_meta("source", options.source)
    journal.set_meta("target", settings.target)
    if plan.resumed and settings.target == "emulate":
        # An in-process emulator dies with its process: ids from an earlier run cannot be
        # polled again. Emulated generations cost nothing, so make them again.
        for row in journal.rows():
            if row.state in (
                JournalState.SUBMITTED,
                JournalState.COMPLETED,
                JournalState.UNCERTAIN,
            ):
                journal.reset_for_resubmit(
                    row.key, "the emulator of an earlier run is gone; resubmitting (free)"
                )
    for row in journal.rows():
        if row.state is not JournalState.DOWNLOADED or row.line is None:
            continue
        problem = _check_file(journal.folder, row)
        if problem is not None:
            journal.record_file_lost(row.key, problem)
            plan.notes.append(f"{options.source}:{row.line}: {problem}; downloading it again")
    removed = _remove_stale_parts(journal.folder)
    if removed:
        plan.notes.append(f"removed {removed} partial download(s) left by an interrupted run")
    for row in journal.rows():
        if row.line is None:
            continue
        if options.resubmit_uncertain and row.state is JournalState.UNCERTAIN:
            journal.reset_for_resubmit(row.key, "--resubmit-uncertain")
        elif options.retry_failed and row.state is JournalState.FAILED:
            journal.reset_for_resubmit(row.key, "--retry-failed")
    rows = {row.key: row for row in journal.rows()}
    for key, item in zip(keys, inputs, strict=True):
        row = rows[key]
        if row.state in (JournalState.PENDING, JournalState.REFUSED):
            plan.submit.append((item, key))
        elif row.state in (JournalState.SUBMITTED, JournalState.COMPLETED):
            assert row.generation_id is not None
            plan.track.append((item, key, row.generation_id))
    return plan


#: Temporary files of the downloader (``.<name>.<hex>.part``) for this command's video names.
_STALE_PART = re.compile(r"^\.\d{4,}-[A-Za-z0-9._-]*\.mp4\.[0-9a-f]+\.part$")


def _remove_stale_parts(folder: Path) -> int:
    """Delete partial downloads a killed run left behind (the journal lock is held)."""
    removed = 0
    for path in folder.glob(".*.part"):
        if _STALE_PART.match(path.name):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _check_file(folder: Path, row: JournalRow) -> str | None:
    if not row.file:
        return "the journal has no file name for this download"
    path = folder / row.file
    if not path.is_file():
        return f"{row.file} is missing"
    if row.size is not None and path.stat().st_size != row.size:
        return f"{row.file} has the wrong size"
    if file_sha256(path) != row.sha256:
        return f"{row.file} does not match its recorded SHA-256"
    return None


# --------------------------------------------------------------------------- running


@dataclass
class _Download:
    key: int
    line: int
    request: VideoRequest | None
    generation: Generation


@dataclass
class RunStats:
    """What happened in this run."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    downloaded: int = 0
    download_failed: int = 0
    interrupted: bool = False
    hard_stop: bool = False
    stop_reason: str | None = None
    counts: BatchCounts = field(default_factory=BatchCounts)


class StopControl:
    """First signal: stop submitting, let in-flight creates be recorded, then cancel."""

    def __init__(self) -> None:
        self.requested = False
        self.hard = False
        self.reason: str | None = None
        """Why the run stopped itself (not a signal), e.g. a full disk."""
        self.task_group: anyio.abc.TaskGroup | None = None
        self.work_scope: anyio.CancelScope | None = None
        self.in_flight: set[int] = set()
        self._drained: anyio.Event | None = None

    def done(self, index: int) -> None:
        """The create of input ``index`` is recorded (or will never be sent)."""
        self.in_flight.discard(index)
        if not self.in_flight and self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Wait until no create is in flight."""
        while self.in_flight:
            self._drained = anyio.Event()
            await self._drained.wait()

    def stop_for(self, reason: str) -> None:
        """Stop as on a first signal (no new creates; in-flight ones recorded), for ``reason``."""
        if self.requested:
            return
        self.requested = True
        self.reason = reason
        echo_err(f"\nStopping: {reason}; no new submissions, recording the requests in flight...")
        if self.task_group is not None:
            self.task_group.start_soon(_drain_then_cancel, self)

    def cancel_work(self) -> None:
        """Cancel the batch and the downloads."""
        if self.work_scope is not None:
            self.work_scope.cancel()


class JournalObserver(NullObserver):
    """Writes the journal from the engine's hooks and feeds the progress display."""

    def __init__(
        self,
        journal: Journal,
        stop: StopControl,
        stats: RunStats,
        lines: dict[int, int] | None = None,
    ) -> None:
        self.journal = journal
        self.stop = stop
        self.stats = stats
        self.lines = lines or {}
        self.limiter = anyio.CapacityLimiter(1)
        self.on_change: Callable[[], None] = lambda: None

    async def _call(self, func: Callable[..., _T], *args: Any) -> _T:
        return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self.limiter)

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        """Record the intent (committed, fsynced) before the create is sent."""
        if self.journal.disk_full:
            self.stop.stop_for(f"the disk holding {self.journal.folder} is full")
        if self.stop.requested:
            await anyio.sleep_forever()  # stopping: this input stays pending (never sent)
        key = _key(item.key)
        self.stop.in_flight.add(index)
        try:
            await self._call(self.journal.record_intent, key)
        except BaseException:
            self.stop.done(index)
            raise

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        """Record the generation id as soon as the create returns (before anything else).

        If even that write fails (a full disk), the id is printed on stderr before the error
        ends the run, so a generation that was paid for is never lost without a trace.
        """
        try:
            await self._call(
                self.journal.record_submitted,
                _key(item.key),
                generation.id,
                str(generation.status),
            )
            self.stats.submitted += 1
        except Exception as exc:
            line = self.lines.get(_key(item.key), "?")
            echo_err(
                f"error: generation {generation.id} (input line {line}) was created and may be "
                f"billed, but could not be recorded: {exc}. Keep this id: after fixing the "
                f"problem, `veo-async download {generation.id}` fetches its video."
            )
            self.stop.requested = True
            raise
        finally:
            self.stop.done(index)

    async def on_result(self, result: BatchResult) -> None:
        """Record how the input ended."""
        try:
            await self._call(_record_result, self.journal, result)
        finally:
            self.stop.done(result.index)
        if result.ok:
            self.stats.completed += 1
        else:
            self.stats.failed += 1
        self.on_change()

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        """Nothing: progress comes from the counters."""

    def on_progress(self, counts: BatchCounts) -> None:
        """Keep the latest counters for the display."""
        self.stats.counts = counts
        self.on_change()


def _key(key: object) -> int:
    if not isinstance(key, int):
        raise TypeError(f"batch item key must be the input's journal key, got {key!r}")
    return key


def _record_result(journal: Journal, result: BatchResult) -> None:
    key = _key(result.key)
    error = result.error
    generation = result.generation
    gid = result.generation_id or (generation.id if generation is not None else None)
    if result.ok and generation is not None:
        journal.record_finished(
            key,
            generation_id=generation.id,
            status=str(generation.status),
            video_url=generation.video_url,
            credits=generation.credits_used,
            error=None,
        )
    elif isinstance(error, CreateOutcomeUnknownError):
        journal.record_uncertain(key, str(error))
    elif gid is None:
        journal.record_refused(key, str(error) if error is not None else "not submitted")
    elif isinstance(error, GenerationFailedError) or (generation is not None and generation.failed):
        failed = error.generation if isinstance(error, GenerationFailedError) else generation
        assert failed is not None
        journal.record_finished(
            key,
            generation_id=gid,
            status=str(failed.status),
            video_url=None,
            credits=failed.credits_used,
            error=failed.error_message or (str(error) if error else "completed without a video"),
        )
    elif isinstance(error, NotFoundError):
        journal.record_finished(
            key,
            generation_id=gid,
            status=None,
            video_url=None,
            credits=None,
            error=f"the server does not know generation {gid}: {error}",
        )
    else:
        journal.record_still_running(
            key, gid, str(error) if error is not None else "did not finish in this run"
        )


class _Display:
    """Progress on stderr: a rich bar on a terminal, plain periodic lines otherwise."""

    def __init__(self, stats: RunStats, total: int, *, live: bool, interval: float) -> None:
        self.stats = stats
        self.total = total
        self.live = live
        self.interval = interval
        self.started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._last_line: str | None = None

    def _fields(self) -> str:
        c, s = self.stats.counts, self.stats
        text = (
            f"submitted {c.submitted}, running {c.running}, done {c.done}, "
            f"failed {c.failed}, downloaded {s.downloaded}"
        )
        if c.uncertain:
            text += f", uncertain {c.uncertain}"
        return text

    def __enter__(self) -> _Display:
        if self.live and self.total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}", markup=False),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True, highlight=False),
                refresh_per_second=8,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, counts=self._fields())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.__exit__(None, None, None)
            self._progress = None
        else:
            self.print_line(force=True)

    def refresh(self) -> None:
        """Update the bar from the latest counters."""
        if self._progress is not None:
            c = self.stats.counts
            self._progress.update(self._task, completed=c.done + c.failed, counts=self._fields())

    def print_line(self, *, force: bool = False) -> None:
        """One plain progress line (when something changed, or ``force``)."""
        if self._progress is not None or not self.total:
            return
        line = self._fields()
        if force or line != self._last_line:
            self._last_line = line
            elapsed = time.monotonic() - self.started
            c = self.stats.counts
            finished = c.done + c.failed
            echo_err(f"[{elapsed:7.1f}s] {finished}/{self.total} finished: {line}")

    async def run(self) -> None:
        """Refresh periodically until cancelled."""
        while True:
            if self._progress is not None:
                await anyio.sleep(0.25)
                self.refresh()
            else:
                await anyio.sleep(self.interval)
                self.print_line()


async def _watch_signals(stop: StopControl, tg: anyio.abc.TaskGroup, source: str) -> None:
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        with receiver as signals:
            async for _ in signals:
                if not stop.requested:
                    stop.requested = True
                    echo_err(
                        "\nStopping: no new submissions; recording the requests in flight... "
                        "(press Ctrl-C again to quit at once)"
                    )
                    tg.start_soon(_drain_then_cancel, stop)
                else:
                    stop.hard = True
                    echo_err("\nStopping now.")
                    stop.cancel_work()
                    tg.start_soon(_exit_soon)
    except NotImplementedError:  # pragma: no cover - platforms without signal support
        return


async def _exit_soon(delay: float = 1.0) -> None:
    """Second signal: if cleanup takes more than ``delay`` seconds, leave at once.

    Safe for the journal: SQLite commits are atomic even when the process dies mid-write
    (the same guarantee a SIGKILL relies on); the next run rewrites the manifest.
    """
    await anyio.sleep(delay)
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


async def _drain_then_cancel(stop: StopControl) -> None:
    with anyio.move_on_after(120):
        await stop.wait_drained()
    stop.cancel_work()


def _download_error(exc: Exception, folder: Path) -> str:
    """One line for a failed download (a full disk names the disk)."""
    if isinstance(exc, OSError) or isinstance(exc.__cause__, OSError):
        os_error = exc if isinstance(exc, OSError) else exc.__cause__
        assert isinstance(os_error, OSError)
        if os_error.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"download: {disk_problem(folder, os_error)}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, VeoError):
        return f"download: {text or type(exc).__name__}"
    return f"download: {type(exc).__name__}: {text}" if text else f"download: {type(exc).__name__}"


async def _download_worker(
    receive: MemoryObjectReceiveStream[_Download],
    client: AsyncVeoClient,
    journal: Journal,
    observer: JournalObserver,
    stats: RunStats,
) -> None:
    async with receive:
        async for job in receive:
            prompt = job.request.prompt if job.request is not None else "video"
            name = video_filename(job.line, prompt, job.generation.id)
            try:
                # The name carries the line and the generation id, so a file already there is
                # a download of this very video that the journal did not record (a crash
                # between the rename and the commit): replacing it is safe.
                video = await client.download(job.generation, journal.folder / name, overwrite=True)
            except Exception as exc:
                # Any failure of one download (a typed DownloadError, a full disk, or anything
                # unexpected from the transport) is this job's failure: recorded, the batch
                # goes on, and the next run downloads it again. Cancellation is not an
                # Exception and passes through.
                stats.download_failed += 1
                await observer._call(
                    journal.record_download_failed, job.key, _download_error(exc, journal.folder)
                )
            else:
                stats.downloaded += 1
                await observer._call(
                    functools.partial(
                        journal.record_downloaded,
                        job.key,
                        file=name,
                        sha256=video.sha256,
                        size=video.size,
                    )
                )
            observer.on_change()


async def _execute(
    client: AsyncVeoClient,
    journal: Journal,
    plan: Plan,
    options: BatchOptions,
    stats: RunStats,
) -> None:
    stop = StopControl()
    observer = JournalObserver(journal, stop, stats, plan.lines)
    items: list[BatchItem] = [
        BatchItem(request=item.request, generation_id=gid, key=key) for item, key, gid in plan.track
    ]
    items += [BatchItem(request=item.request, key=key) for item, key in plan.submit]
    display = _Display(stats, len(items), live=stderr_is_tty(), interval=options.progress_interval)
    observer.on_change = display.refresh
    send, receive = anyio.create_memory_object_stream[_Download](math.inf)
    batch = client.batch(
        items,
        max_concurrency=options.concurrency,
        requests_per_second=options.rate,
        job_timeout=options.job_timeout,
        max_generations=options.max_generations,
        observer=observer,
    )
    with display:
        async with anyio.create_task_group() as outer:
            stop.task_group = outer
            outer.start_soon(_watch_signals, stop, outer, options.source)
            outer.start_soon(display.run)
            with anyio.CancelScope() as work:
                stop.work_scope = work
                async with anyio.create_task_group() as tg:
                    for _ in range(options.download_concurrency):
                        tg.start_soon(
                            _download_worker, receive.clone(), client, journal, observer, stats
                        )
                    receive.close()
                    async with send, batch:
                        async for result in batch:
                            if result.ok and result.generation is not None:
                                key = _key(result.key)
                                job = _Download(
                                    key, plan.lines[key], result.request, result.generation
                                )
                                send.send_nowait(job)
            stats.stop_reason = stop.reason or batch.stop_reason
            # Inputs whose intent was written but whose create was never sent (cancelled in
            # before_submit) are not uncertain: put them back. Creates still unanswered when
            # the engine's grace ran out are uncertain now rather than at the next start.
            with anyio.CancelScope(shield=True):
                for _, item in batch.unsubmitted():
                    await observer._call(journal.record_not_sent, _key(item.key))
                for _, item in batch.uncertain():
                    row = await observer._call(journal.row, _key(item.key))
                    if row is not None and row.state is JournalState.SUBMITTING:
                        await observer._call(
                            journal.record_uncertain,
                            row.key,
                            "the run stopped before the create request was answered; it may "
                            "or may not have started a billed generation",
                        )
            outer.cancel_scope.cancel()
    stats.interrupted = stop.requested and stop.reason is None
    stats.hard_stop = stop.hard


# --------------------------------------------------------------------------- reporting


def _summary(
    journal: Journal, plan: Plan, options: BatchOptions, stats: RunStats
) -> tuple[int, dict[str, Any], list[str]]:
    wanted = set(plan.lines)
    rows = [r for r in journal.rows() if r.key in wanted]
    states = Counter(r.state.value for r in rows)
    credits = sum(r.credits or 0 for r in rows)
    problems: list[dict[str, Any]] = []
    for row in rows:
        if row.state is JournalState.DOWNLOADED:
            continue
        reason = {
            JournalState.PENDING: "not submitted yet",
            JournalState.SUBMITTING: "create in flight when the run stopped",
            JournalState.SUBMITTED: "still generating; rerun to resume",
            JournalState.COMPLETED: "completed but not downloaded yet; rerun to download",
            JournalState.UNCERTAIN: "create outcome unknown (not resubmitted; "
            "--resubmit-uncertain submits it again and may pay twice)",
            JournalState.REFUSED: "the create was refused (nothing was charged)",
            JournalState.FAILED: "the generation failed",
        }[row.state]
        problems.append(
            {
                "line": row.line,
                "state": row.state.value,
                "generation_id": row.generation_id,
                "reason": reason,
                "error": row.error,
            }
        )
    if stats.interrupted or stats.hard_stop:
        code = EXIT_INTERRUPTED
    elif problems:
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    doc: dict[str, Any] = {
        "source": options.source,
        "out": str(options.out),
        "manifest": str(options.out / MANIFEST_NAME),
        "inputs": len(rows),
        "states": dict(sorted(states.items())),
        "downloaded": states.get("downloaded", 0),
        "credits": credits,
        "this_run": {
            "submitted": stats.submitted,
            "completed": stats.completed,
            "failed": stats.failed,
            "downloaded": stats.downloaded,
            "download_failed": stats.download_failed,
        },
        "resumed": plan.resumed,
        "interrupted": stats.interrupted,
        "stop_reason": stats.stop_reason,
        "problems": problems,
        "notes": plan.notes,
        "exit_code": code,
    }
    lines = [
        f"{len(rows)} inputs from {options.source} -> {options.out}: "
        f"{states.get('downloaded', 0)} downloaded"
        + "".join(f", {n} {s}" for s, n in sorted(states.items()) if s != "downloaded")
        + (f"; {credits:g} credits" if credits else ""),
        f"this run: submitted {stats.submitted}, completed {stats.completed}, failed "
        f"{stats.failed}, downloaded {stats.downloaded}",
    ]
    if stats.stop_reason:
        lines.append(f"submission stopped early: {stats.stop_reason}")
    if problems:
        lines.append("not done:")
        for p in problems:
            gid = f" [{p['generation_id']}]" if p["generation_id"] else ""
            err = f": {p['error']}" if p["error"] and p["state"] != "pending" else ""
            lines.append(f"  {options.source}:{p['line']}{gid} {p['reason']}{err}")
    lines.append(f"manifest: {options.out / MANIFEST_NAME}")
    if code == EXIT_INTERRUPTED:
        lines.append(
            f"Interrupted; the journal is consistent. Resume with:\n    {options.resume_command()}"
        )
    elif any(p["state"] in ("pending", "submitted", "completed") for p in problems):
        lines.append(f"Rerun the same command to resume:\n    {options.resume_command()}")
    return code, doc, lines


async def run_batch_command(settings: Settings, options: BatchOptions) -> int:
    """The ``batch`` command: validate, plan against the journal, run, report."""
    defaults: dict[str, Any] = dict(options.defaults)
    for name in MEDIA_FIELDS & defaults.keys():
        try:
            defaults[name] = media_to_data_uri(defaults[name], Path.cwd(), field=name)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if options.model is not None:
        defaults["model"] = options.model
    try:
        inputs = await anyio.to_thread.run_sync(
            functools.partial(
                load_inputs,
                options.prompts,
                defaults=defaults,
                extra_body=options.extra_body or None,
                fmt=options.fmt,
                allow_media_outside=options.allow_media_outside,
            )
        )
    except InputError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if options.dry_run:
        models = Counter(item.request.model for item in inputs)
        if settings.json_output:
            echo_json(
                {
                    "source": options.source,
                    "inputs": len(inputs),
                    "models": dict(models),
                    "requests": [
                        {"line": i.line, "request": redact_body(i.request.to_body())}
                        for i in inputs
                    ],
                }
            )
        else:
            per_model = ", ".join(f"{n} {m}" for m, n in sorted(models.items()))
            echo_err(f"{len(inputs)} valid inputs in {options.source} ({per_model}); nothing sent")
        return EXIT_OK
    async with open_client(settings) as client:
        try:
            journal = await anyio.to_thread.run_sync(Journal.open, options.out)
        except JournalError as exc:
            raise CliError(str(exc)) from None
        stats = RunStats()
        try:
            plan = await anyio.to_thread.run_sync(_prepare, journal, inputs, settings, options)
            for note in plan.notes:
                echo_err(f"note: {note}")
            if plan.resumed:
                echo_err(
                    f"resuming the batch in {options.out}: {len(plan.track)} to poll again, "
                    f"{len(plan.submit)} to submit"
                )
            failure: BaseException | None = None
            try:
                if plan.track or plan.submit:
                    await _execute(client, journal, plan, options, stats)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        rows = await anyio.to_thread.run_sync(journal.rows)
                        await anyio.to_thread.run_sync(
                            write_manifest, options.out / MANIFEST_NAME, rows
                        )
                    except JournalError as exc:
                        if failure is None:
                            raise
                        echo_err(f"error: {exc}")  # the run's own error follows
            code, doc, lines = await anyio.to_thread.run_sync(
                _summary, journal, plan, options, stats
            )
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(journal.close)
    if settings.json_output:
        echo_json(doc)
    for text in lines:
        echo_err(text)
    return code
