"""Running one planned batch: the engine, the journal observer, downloads and signals.

The engine's observer hooks write the journal (an SQLiteStore: every write runs on the
store's worker thread, never on the event loop): the intent before each create, the id after
it, the first time a job is seen running, each result (with its status-request count).
Signals: the first SIGINT/SIGTERM stops submitting, waits until the creates already in
flight have their ids recorded, then cancels the rest (polls and downloads resume next run);
a second one cancels at once. Either way every journal write is a transaction, and the
manifest is rewritten from the journal every few seconds while the run goes on, so a run that
crashes or is killed still leaves one.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._client import AsyncVeoClient
from .._engine import BatchCounts, BatchItem, BatchResult, JobEvent, NullObserver
from .._exceptions import APIConnectionError, VeoError
from .._journal import Journal, JournalError, JournalState, disk_problem, write_manifest
from .._models import Generation, GenerationStatus, VideoRequest
from .._resume import Plan, journal_key, record_result, video_filename
from ._common import EXIT_INTERRUPTED, echo_err
from ._events import EventLog

__all__ = ["MANIFEST_NAME", "RunSettings", "RunStats", "execute", "refresh_manifest"]

MANIFEST_NAME = "manifest.jsonl"

#: Seconds between manifest rewrites while a run goes on (only when something changed).
MANIFEST_INTERVAL = 2.0


@dataclass
class RunSettings:
    """How to run the batch (the engine's and the downloads' knobs)."""

    concurrency: int = 16
    rate: float | None = None
    download_concurrency: int = 4
    job_timeout: float | None = 1000.0
    max_generations: int | None = None
    credit_budget: float | None = None
    estimated_credits_per_job: float | None = None
    progress_interval: float = 10.0
    live: bool = False


@dataclass
class RunStats:
    """What happened in this run; ``ended`` counts results by the journal state they left."""

    submitted: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    downloaded: int = 0
    download_failed: int = 0
    interrupted: bool = False
    hard_stop: bool = False
    stop_reason: str | None = None
    changes: int = 0
    connect_error: BaseException | None = None
    """A create or poll that could not connect at all (the server named may not be running)."""
    counts: BatchCounts = field(default_factory=BatchCounts)

    @property
    def completed(self) -> int:
        """Generations of this run that completed (downloaded or not)."""
        return self.ended[JournalState.COMPLETED.value]

    @property
    def failed(self) -> int:
        """Generations of this run that failed (the server said so)."""
        return self.ended[JournalState.FAILED.value]

    def outcome_fields(self) -> str:
        """``failed 1, uncertain 2, ...``: what did not go well, the same words everywhere."""
        parts = [f"failed {self.failed}"]
        for state, word in (
            (JournalState.UNCERTAIN, "uncertain"),
            (JournalState.REFUSED, "refused"),
            (JournalState.SUBMITTED, "still running"),
        ):
            if self.ended[state.value]:
                parts.append(f"{word} {self.ended[state.value]}")
        if self.download_failed:
            parts.append(f"download failed {self.download_failed}")
        return ", ".join(parts)


@dataclass
class _Download:
    key: int
    number: int
    request: VideoRequest | None
    generation: Generation


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
    """Writes the journal (and the event log) from the engine's hooks; feeds the display."""

    def __init__(
        self,
        journal: Journal,
        stop: StopControl,
        stats: RunStats,
        plan: Plan,
        items: list[BatchItem],
        events: EventLog,
    ) -> None:
        self.journal = journal
        self.stop = stop
        self.stats = stats
        self.plan = plan
        self.items = items
        self.events = events
        self.limiter = anyio.CapacityLimiter(1)
        """One manifest write at a time."""
        self.on_change: Callable[[], None] = lambda: None
        self._started: set[int] = set()

    def _where(self, key: int) -> tuple[int | None, int | None]:
        return self.plan.numbers.get(key), self.plan.lines.get(key)

    def _changed(self) -> None:
        self.stats.changes += 1
        self.on_change()

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        """Record the intent (committed, fsynced) before the create is sent."""
        if self.journal.disk_full:
            self.stop.stop_for(f"the disk holding {self.journal.folder} is full")
        if self.stop.requested:
            await anyio.sleep_forever()  # stopping: this input stays pending (never sent)
        key = journal_key(item.key)
        self.stop.in_flight.add(index)
        try:
            await self.journal.record_intent(key)
        except BaseException:
            self.stop.done(index)
            raise

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        """Record the generation id as soon as the create returns (before anything else).

        If even that write fails (a full disk), the id is printed on stderr before the error
        ends the run, so a generation that was paid for is never lost without a trace.
        """
        key = journal_key(item.key)
        try:
            await self.journal.record_submitted(key, generation.id, str(generation.status))
            self.stats.submitted += 1
        except Exception as exc:
            line = self.plan.lines.get(key, "?")
            echo_err(
                f"error: generation {generation.id} (input line {line}) was created and may be "
                f"billed, but could not be recorded: {exc}. Keep this id: after fixing the "
                f"problem, `veo-async download {generation.id}` fetches its video."
            )
            self.stop.requested = True
            raise
        finally:
            self.stop.done(index)
        self._changed()

    async def on_result(self, result: BatchResult) -> None:
        """Record how the input ended (with its status-request count) and log the event."""
        key = journal_key(result.key)
        try:
            state = await record_result(self.journal, result, result.polls)
        finally:
            self.stop.done(result.index)
        self.stats.ended[state.value] += 1
        generation = result.generation
        error = result.error
        if isinstance(error, APIConnectionError) and not error.request_sent:
            self.stats.connect_error = error
        self.events.write(
            "succeeded" if result.ok else "failed",
            *self._where(key),
            generation_id=result.generation_id or (generation.id if generation else None),
            status=str(generation.status) if generation is not None else None,
            request_id=getattr(error, "request_id", None),
            state=state.value,
            error=str(error) if error is not None else None,
            credits=generation.credits_used if generation is not None else None,
            polls=result.polls,
        )
        self._changed()

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        """Log submitting/submitted/status events; note the first time a job runs."""
        if event in (JobEvent.SUCCEEDED, JobEvent.FAILED):
            return  # logged by on_result, which knows the error and the journal state
        key = journal_key(self.items[index].key)
        if event is JobEvent.STATUS and generation is not None:
            self._note_started(key, generation)
        self.events.write(
            event.value,
            *self._where(key),
            generation_id=generation.id if generation is not None else None,
            status=str(generation.status) if generation is not None else None,
        )

    def _note_started(self, key: int, generation: Generation) -> None:
        """Record a ``status`` event the first time a job is seen generating (the report's
        "started" mark), in the background."""
        if key in self._started or generation.status is not GenerationStatus.GENERATING:
            return
        self._started.add(key)
        if self.stop.task_group is not None:
            self.stop.task_group.start_soon(self._record_status, key, str(generation.status))

    async def _record_status(self, key: int, status: str) -> None:
        # A lost "started" mark is cosmetic; the next write reports a full disk.
        with contextlib.suppress(JournalError):
            await self.journal.record_status(key, status)

    def on_progress(self, counts: BatchCounts) -> None:
        """Keep the latest counters for the display."""
        self.stats.counts = counts
        self.on_change()


async def refresh_manifest(journal: Journal, path: Path, limiter: anyio.CapacityLimiter) -> None:
    """Rewrite ``manifest.jsonl`` from the journal (atomically)."""
    rows = await journal.rows()
    await anyio.to_thread.run_sync(write_manifest, path, rows, limiter=limiter)


async def _keep_manifest(journal: Journal, stats: RunStats, limiter: anyio.CapacityLimiter) -> None:
    """While the run goes on, rewrite the manifest when something changed (crash insurance)."""
    seen, interval = stats.changes, MANIFEST_INTERVAL
    while True:
        await anyio.sleep(interval)
        if stats.changes != seen:
            seen = stats.changes
            started = time.monotonic()
            with contextlib.suppress(JournalError):  # the final write reports it
                await refresh_manifest(journal, journal.folder / MANIFEST_NAME, limiter)
            # A big journal takes longer to write: keep the rewrites under 5% of the time
            # the journal's writer is busy, so creates are never held up by the manifest.
            interval = max(MANIFEST_INTERVAL, 20 * (time.monotonic() - started))


async def _watch_signals(stop: StopControl, tg: anyio.abc.TaskGroup) -> None:
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
    (the same guarantee a SIGKILL relies on); the manifest is at most a few seconds old.
    """
    await anyio.sleep(delay)
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


async def _drain_then_cancel(stop: StopControl) -> None:
    with anyio.move_on_after(120):
        await stop.wait_drained()
    stop.cancel_work()


def download_error(exc: Exception, folder: Path) -> str:
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


async def _download_one(
    job: _Download, client: AsyncVeoClient, journal: Journal, observer: JournalObserver
) -> None:
    stats, where = observer.stats, (job.number, observer.plan.lines.get(job.key))
    prompt = job.request.prompt if job.request is not None else "video"
    name = video_filename(job.number, prompt, job.generation.id)
    try:
        # The name carries the number and the generation id, so a file already there is a
        # download of this very video that the journal did not record (a crash between the
        # rename and the commit): replacing it is safe.
        video = await client.download(job.generation, journal.folder / name, overwrite=True)
    except Exception as exc:
        # Any failure of one download (a typed DownloadError, a full disk, or anything
        # unexpected from the transport) is this job's failure: recorded, the batch goes on,
        # and the next run downloads it again. Cancellation is not an Exception.
        stats.download_failed += 1
        text = download_error(exc, journal.folder)
        await journal.record_download_failed(job.key, text)
        observer.events.write(
            "download_failed",
            *where,
            generation_id=job.generation.id,
            request_id=getattr(exc, "request_id", None),
            error=text,
        )
    else:
        stats.downloaded += 1
        await journal.record_downloaded(job.key, file=name, sha256=video.sha256, size=video.size)
        observer.events.write(
            "downloaded", *where, generation_id=job.generation.id, file=name, size=video.size
        )
    observer._changed()


async def _download_worker(
    receive: MemoryObjectReceiveStream[_Download],
    client: AsyncVeoClient,
    journal: Journal,
    observer: JournalObserver,
) -> None:
    async with receive:
        async for job in receive:
            await _download_one(job, client, journal, observer)


async def execute(
    client: AsyncVeoClient,
    journal: Journal,
    plan: Plan,
    run: RunSettings,
    stats: RunStats,
    events: EventLog,
) -> None:
    """Run the plan: poll known ids, submit the rest, download each video as it completes."""
    from ._display import Display

    stop = StopControl()
    items: list[BatchItem] = [
        BatchItem(request=item.request, generation_id=gid, key=key) for item, key, gid in plan.track
    ]
    items += [BatchItem(request=item.request, key=key) for item, key in plan.submit]
    observer = JournalObserver(journal, stop, stats, plan, items, events)
    display = Display(stats, len(items), live=run.live, interval=run.progress_interval)
    observer.on_change = display.refresh
    batch = client.batch(
        items,
        max_concurrency=run.concurrency,
        requests_per_second=run.rate,
        job_timeout=run.job_timeout,
        max_generations=run.max_generations,
        credit_budget=run.credit_budget,
        estimated_credits_per_job=run.estimated_credits_per_job,
        observer=observer,
    )
    with display:
        async with anyio.create_task_group() as outer:
            stop.task_group = outer
            outer.start_soon(_watch_signals, stop, outer)
            outer.start_soon(display.run)
            outer.start_soon(_keep_manifest, journal, stats, observer.limiter)
            with anyio.CancelScope() as work:
                stop.work_scope = work
                await _run_batch(batch, client, journal, observer, run.download_concurrency)
            stats.stop_reason = stop.reason or batch.stop_reason
            with anyio.CancelScope(shield=True):
                await _settle(batch, journal, observer)
            outer.cancel_scope.cancel()
    stats.interrupted = stop.requested and stop.reason is None
    stats.hard_stop = stop.hard


async def _run_batch(
    batch: Any,
    client: AsyncVeoClient,
    journal: Journal,
    observer: JournalObserver,
    workers: int,
) -> None:
    """Consume the batch's results, handing each completed one to the download workers."""
    send, receive = anyio.create_memory_object_stream[_Download](math.inf)
    plan = observer.plan
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(_download_worker, receive.clone(), client, journal, observer)
        receive.close()
        async with send, batch:
            async for result in batch:
                if result.ok and result.generation is not None:
                    key = journal_key(result.key)
                    number = plan.numbers[key]
                    # The download workers are gone only when the run is being cancelled (a
                    # stop): the result is in the journal, the next run downloads it.
                    with contextlib.suppress(anyio.BrokenResourceError):
                        send.send_nowait(_Download(key, number, result.request, result.generation))


async def _settle(batch: Any, journal: Journal, observer: JournalObserver) -> None:
    """After the batch: never-sent intents go back to pending, unanswered creates uncertain."""
    for _, item in batch.unsubmitted():
        await journal.record_not_sent(journal_key(item.key))
    for _, item in batch.uncertain():
        row = await journal.row(journal_key(item.key))
        if row is not None and row.state is JournalState.SUBMITTING:
            await journal.record_uncertain(
                row.key,
                "the run stopped before the create request was answered; it may "
                "or may not have started a billed generation",
            )
