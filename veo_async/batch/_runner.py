"""The runner: the task group of one batch, which feeds inputs, creates and polls.

Its parts: the feeder reads inputs and, when the cost guard (``_guard.py``) and a
concurrency slot allow, starts one short task per create; the dispatcher takes due jobs from
the scheduler (``_scheduler.py``) and starts one short task per poll; every reply goes to the
poll planner (:class:`~veo_async.polling.BatchPlanner`), which says when to look again; every
state change goes through the job table (``_jobs.py``); results leave through one memory
object stream. See the package docstring for why a context manager and for the guarantees.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterable, Iterable, Sized

import anyio
from anyio.abc import TaskGroup

from .. import _timing
from .._exceptions import (
    AuthenticationError,
    CreateOutcomeUnknownError,
    NotFoundError,
    PermissionDeniedError,
    RequestValidationError,
    VeoError,
)
from .._models import Generation
from .._progress import ProgressLine
from ..instrumentation import Span
from ..polling import BatchPlanner, PollPolicy
from ..ratelimit import RateGovernor
from ._api import JobsAPI
from ._errors import (
    create_error,
    generation_failed,
    timed_out,
    unreadable_status,
    wrong_id,
    wrong_reply,
)
from ._feeder import Feeder
from ._guard import CostGuard, sane_credits
from ._jobs import Job, JobState, JobTable
from ._options import BatchOptions
from ._outbox import Outbox, end_span
from ._results import (
    BatchCounts,
    BatchInput,
    BatchItem,
    BatchResult,
    InputTaken,
    JobEvent,
    PendingJob,
)
from ._scheduler import Scheduler

FINAL_STRETCH_JOBS = 4
"""Once every input was submitted and at most this many jobs are left, the batch is in its
final stretch: each of them ends the batch, so every second it goes unnoticed is a second of
makespan."""
FINAL_STRETCH_GAP = 1.0
"""In the final stretch, a job seen generating past its shortest plausible duration is looked
at again at most this many service seconds later (a few requests per second at most: the
rate limit permitting, see :meth:`Runner._final_stretch`). At N = 100 the last job, a
straggler, was looked at every 1.5 to 2.8 s, and noticed 2.4 to 3.4 s late (issue 16)."""

__all__ = ["Runner"]


class Runner:
    """The machinery of one batch (its public face is :class:`~._batch.Batch`)."""

    def __init__(
        self,
        api: JobsAPI,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: BatchOptions,
    ) -> None:
        self.options = options
        self._api = api
        self.policy: PollPolicy = options.poll_policy or api.poll_policy
        rps = options.requests_per_second
        self._limiter = RateGovernor(rps) if rps else None
        self.planner: BatchPlanner[Job] = BatchPlanner(
            self.policy, holding=self._holding, failure_time_scale=api.time_scale
        )
        self._counts = BatchCounts()
        self.guard = CostGuard(
            options.max_generations, options.credit_budget, options.estimated_credits_per_job
        )
        self.table = JobTable(self._counts, self.guard)
        self.feeder = Feeder(self, inputs)
        self._total = len(inputs) if isinstance(inputs, Sized) else None
        self.scheduler = Scheduler(idle=self.feeder.wake)
        self.outbox = Outbox(self.counts, options.observer)
        self.instr = api.instrumentation
        self.span: Span | None = None
        self.timed_out: dict[int, PendingJob] = {}
        self.unsubmitted: dict[int, BatchItem] = {}
        self.uncertain: list[tuple[int, BatchItem]] = []
        self.sem = anyio.Semaphore(options.max_concurrency)
        self._tg: TaskGroup | None = None
        self._shields: set[anyio.CancelScope] = set()
        self._batch_deadline = math.inf
        self.run_done = self.stopping = False
        self.stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self._fatal_raised = False
        self._rate_limited_base = api.governor.rate_limited

    # ------------------------------------------------------------------ for the handle

    def open(self) -> None:
        """Before the run: the result stream, the batch deadline, the batch span."""
        self.outbox.open()
        if self.options.batch_timeout is not None:
            self._batch_deadline = anyio.current_time() + self.options.batch_timeout
        self.span = self.instr.start_batch()
        if self.options.progress:
            self.outbox.line = ProgressLine(self._total)

    def close(self) -> None:
        """After the run: no more results; the spans of jobs left pending and the batch span
        end."""
        if self.outbox.recv is not None:
            self.outbox.recv.close()
        line, self.outbox.line = self.outbox.line, None
        if line is not None:
            line.update(self.counts(), force=True)
            line.close()
        for job in self.table.jobs.values():
            end_span(job, None, None)
        span, self.span = self.span, None
        if span is not None:
            span.set("veo.batch.inputs", self._counts.total_seen)
            span.set("veo.batch.stop_reason", self.stop_reason)
            if self._fatal is not None:
                span.fail(self._fatal)
            span.end()

    def take_fatal(self) -> BaseException | None:
        """The error that ended the batch, the first time it is asked for."""
        if self._fatal is None or self._fatal_raised:
            return None
        self._fatal_raised = True
        return self._fatal

    def consumed(self, index: int) -> None:
        """The consumer took the result of input ``index``: room for more."""
        self.table.consumed(index)
        self.feeder.wake()

    def counts(self) -> BatchCounts:
        """Live counters (the fields read on demand filled in)."""
        counts = self._counts
        counts.rate_limited = self._api.governor.rate_limited - self._rate_limited_base
        counts.queued = len(self.unsubmitted)
        return counts

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """The task: feeder and dispatcher until every input is settled (or the batch stops)."""
        send = self.outbox.send
        assert send is not None
        try:
            with anyio.CancelScope(deadline=self._batch_deadline) as scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self.feeder.run)
                    tg.start_soon(self._dispatch)
            if scope.cancelled_caught and self._fatal is None and not self.stopping:
                self.stop("batch_timeout")
                for job in list(self.table.jobs.values()):
                    if job.state is JobState.TRACKING:
                        why = f"the batch timeout ({self.options.batch_timeout} s) passed"
                        self._timeout(job, why)
        finally:
            self.run_done = True
            send.close()

    def stop(self, reason: str) -> None:
        """Stop submitting (the first reason is kept); what was submitted is still polled."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopping = True
        self.feeder.wake()

    def begin_cancel(self) -> None:
        """Give creates in flight ``create_grace`` seconds to come back with their id."""
        self.stopping = True
        limit = anyio.current_time() + self.options.create_grace
        for shield in self._shields:
            shield.deadline = min(shield.deadline, limit)

    def die(self, exc: BaseException) -> None:
        """An error that makes every further request pointless: stop everything, raise later."""
        if self._fatal is None:
            self._fatal = exc
            if isinstance(exc, AuthenticationError):
                self.stop("authentication")
            elif isinstance(exc, NotFoundError):
                self.stop("not_found")
            else:
                self.stop("error")
        self.begin_cancel()
        # cancels the feeder, the dispatcher and polls; creates run on (shielded, bounded)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _holding(self) -> bool:
        """Whether a rate limit (the client's, or this batch's) is holding requests back."""
        limiter = self._limiter
        return self._api.governor.holding or (limiter is not None and limiter.holding)

    async def slot(self) -> None:
        """A concurrency slot, then this batch's rate (the slot is given back on failure)."""
        await self.sem.acquire()
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
        except BaseException:
            self.sem.release()
            raise

    # ------------------------------------------------------------------ jobs start

    def start_create(self, index: int, item: BatchItem) -> None:
        """Input ``index`` was admitted (a slot is held for it): send its create."""
        job = self._new_job(index, item)
        self.table.transition(job, JobState.SUBMITTING)
        assert self._tg is not None
        self._tg.start_soon(self._create, job, item)

    def _new_job(self, index: int, item: BatchItem) -> Job:
        job = Job(index, item.request, item.key)
        request = job.request
        job.span = self.instr.start_job(
            self.span,
            index,
            request.model if request is not None else None,
            request.prompt if request is not None else None,
        )
        return job

    def track(self, index: int, item: BatchItem) -> None:
        """Start tracking an existing id (nothing is sent until its first poll)."""
        job = self._new_job(index, item)
        job.gid = item.generation_id
        job.resumed = job.started = True
        now = _timing.monotonic()
        job.submitted = job.anchor = job.last_poll = now
        if self.options.job_timeout is not None:
            job.deadline = now + self.options.job_timeout
        self.table.transition(job, JobState.TRACKING)
        self.planner.add(job)
        self.scheduler.push(job, self.planner.first_poll(job, now))

    # ------------------------------------------------------------------ creates

    async def _create(self, job: Job, item: BatchItem) -> None:
        try:
            try:
                await self._submit(job, item)
            except InputTaken:
                # The observer's before_submit found the input taken by another worker of a
                # durable batch: nothing was sent, and the input is not this batch's to report.
                self.table.transition(job, JobState.UNSENT)
                end_span(job, None, None)
                self.scheduler.wake()
                self.feeder.wake()
            finally:
                if job.state is JobState.SUBMITTING:
                    # cancelled before the request was sent (e.g. in before_submit)
                    self.unsubmitted[job.index] = item
                    self.table.transition(job, JobState.UNSENT)
                    end_span(job, None, None)
                    self.scheduler.wake()
        except Exception as exc:
            self.die(exc)

    async def _submit(self, job: Job, item: BatchItem) -> None:
        request = job.request
        assert request is not None
        obs = self.options.observer
        sending = False
        try:
            if obs is not None:
                await obs.before_submit(job.index, item, request)
            self.outbox.event(job.index, JobEvent.SUBMITTING, None)
            with anyio.CancelScope(shield=True) as shield:
                if self.stopping:
                    shield.deadline = anyio.current_time() + self.options.create_grace
                elif math.isfinite(self._batch_deadline):
                    shield.deadline = self._batch_deadline + self.options.create_grace
                self._shields.add(shield)
                try:
                    sending = True  # _send_create gives the slot back
                    generation = await self._send_create(job, item)
                    if generation is not None and obs is not None:
                        await obs.after_submit(job.index, item, generation)
                finally:
                    self._shields.discard(shield)
            if shield.cancelled_caught and job.gid is None and job.state is JobState.SUBMITTING:
                self.uncertain.append((job.index, item))
                self.table.transition(job, JobState.UNCERTAIN)
                end_span(job, None, None)
        finally:
            if not sending:
                self.sem.release()

    async def _send_create(self, job: Job, item: BatchItem) -> Generation | None:
        """Send the create; the new generation, or ``None`` when the input failed."""
        request = job.request
        assert request is not None
        self.unsubmitted.pop(job.index, None)
        # From here on the request may reach the server: only a failure that provably
        # started nothing leaves the input out of uncertain().
        try:
            try:
                with self.instr.use(job.span):
                    generation = await self._api.create(request)
            finally:
                self.sem.release()
        except (AuthenticationError, NotFoundError):
            raise
        except Exception as exc:
            self._create_failed(job, item, create_error(job.index, request, exc))
            return None
        gid = generation.id
        if not gid.strip() or gid in self.table.gids:
            other = self.table.gids.get(gid) if gid.strip() else None
            self._create_failed(job, item, wrong_id(job.index, request, gid, other))
            return None
        self._register(job, generation)
        return generation

    def _register(self, job: Job, generation: Generation) -> None:
        now = _timing.monotonic()
        job.gid = generation.id
        job.submitted = job.anchor = job.last_poll = now
        job.submitted_wall = time.time()
        if self.options.job_timeout is not None:
            job.deadline = now + self.options.job_timeout
        self.table.transition(job, JobState.TRACKING)
        self.planner.add(job)
        self._note_credits(job, generation)
        self.outbox.event(job.index, JobEvent.SUBMITTED, generation)
        self.outbox.progress()
        self.feeder.wake()
        if generation.is_terminal:
            self._finish(job, generation)
        else:
            self.scheduler.push(job, self.planner.first_poll(job, now))

    def _create_failed(self, job: Job, item: BatchItem, exc: VeoError) -> None:
        if isinstance(exc, CreateOutcomeUnknownError):
            self.uncertain.append((job.index, item))
            self.table.transition(job, JobState.UNCERTAIN)
        else:
            self.table.transition(job, JobState.REFUSED)
            if isinstance(exc, PermissionDeniedError):
                self.unsubmitted[job.index] = item
                self.stop("permission_denied")
        self.outbox.emit(BatchResult(job.index, job.request, job.key, error=exc), job)
        self.scheduler.wake()
        self.feeder.wake()

    # ------------------------------------------------------------------ polls

    async def _dispatch(self) -> None:
        try:
            finished = self._all_done
            while (popped := await self.scheduler.next_due(finished)) is not None:
                job, due, now = popped
                if self._postpone(job, due, now):
                    continue
                await self.slot()
                job.due = due
                assert self._tg is not None
                self._tg.start_soon(self._poll, job)
        except Exception as exc:
            self.die(exc)

    def _all_done(self) -> bool:
        return self.feeder.done and self.table.active == 0

    def _postpone(self, job: Job, due: float, now: float) -> bool:
        """Push a due job back when it cannot have started yet (queued behind the limit)."""
        if due >= job.deadline:
            return False
        later = self.planner.recheck(job, now)
        if later is None:
            return False
        later = min(later, job.deadline)
        if later > due + 1e-6 and later > now and not _timing.waiting_disabled():
            self.scheduler.push(job, later)
            return True
        return False

    async def _poll(self, job: Job) -> None:
        try:
            gid = job.gid
            assert gid is not None
            try:
                try:
                    with self.instr.use(job.span):
                        generation = await self._api.get(gid)
                finally:
                    self.sem.release()
                    job.polls += 1
                    self._counts.status_requests += 1
            except AuthenticationError:
                raise
            except (NotFoundError, PermissionDeniedError, RequestValidationError) as exc:
                self._finish(job, None, exc)
                return
            except Exception as exc:
                # A failed or unreadable status reply is this job's trouble, never the
                # batch's (cancellation is no Exception and goes through).
                self._poll_failed(job, unreadable_status(gid, exc))
                return
            if generation.id != gid:
                self._poll_failed(job, wrong_reply(gid, job.index, generation))
                return
            self._observed(job, generation)
        except Exception as exc:
            self.die(exc)

    def _poll_failed(self, job: Job, exc: VeoError) -> None:
        """A status request failed (after the client's retries): back off, or give up."""
        job.failures += 1
        now = _timing.monotonic()
        if job.failures >= self.options.max_poll_failures:
            self._finish(job, None, exc)
        elif now >= job.deadline:
            self._timeout(job, f"did not finish within {self.options.job_timeout} s")
        else:
            self.scheduler.push(job, self.planner.after_failure(job, now))

    def _observed(self, job: Job, generation: Generation) -> None:
        now = _timing.monotonic()
        job.failures = 0
        self._note_credits(job, generation)
        self.outbox.event(job.index, JobEvent.STATUS, generation)
        if generation.is_terminal:
            self.instr.detected(now - job.last_poll)
            self._finish(job, generation)
            return
        self.planner.seen(job, generation, now)
        self.feeder.wake()  # what it saw may make room for creates held back (queue_ahead)
        settle = self.planner.settle(now)  # the server's concurrency, while unsettled
        if settle is not None:
            self.scheduler.push(*settle)
        if now >= job.deadline:
            self._timeout(job, f"did not finish within {self.options.job_timeout} s", generation)
            return
        due = self.planner.plan(job, now)
        stretch = self._stretch_due(job, now)
        if stretch is not None:
            due = min(due, stretch)
        self.scheduler.push(job, due)

    def _stretch_due(self, job: Job, now: float) -> float | None:
        """In the final stretch (every input submitted, at most ``FINAL_STRETCH_JOBS`` left,
        no rate limit holding requests back), the latest time for the next look at ``job``:
        ``FINAL_STRETCH_GAP`` after the last one, once past its shortest plausible duration.
        ``None`` outside it. (Fewer jobs are left than the server runs at once: each of them
        is generating, and each one decides the batch's makespan.)"""
        if not self.feeder.done or self.table.active > FINAL_STRETCH_JOBS or self._holding():
            return None
        gap = FINAL_STRETCH_GAP * self.policy.time_scale
        return max(now, job.last_poll + gap, job.anchor + self.policy.shortest(job.prior))

    def _tighten_stretch(self, now: float) -> None:
        """A job ended: if the batch is now in its final stretch, bring the planned looks at
        the jobs left forward to their :meth:`_stretch_due` (not one with a look under way)."""
        if not self.feeder.done or self.table.active > FINAL_STRETCH_JOBS:
            return
        for other in list(self.table.jobs.values()):
            if other.state is not JobState.TRACKING or other.planned <= now:
                continue
            due = self._stretch_due(other, now)
            if due is not None and due < other.planned - 1e-6:
                self.scheduler.push(other, due)

    def _note_credits(self, job: Job, generation: Generation) -> None:
        credits = sane_credits(generation)
        if credits is None:
            return  # missing or nonsense: the job stays charged at the estimate
        previous = job.credits
        self.guard.cost_known(previous, credits, counted=not job.resumed)
        job.credits = credits
        if previous is None:
            self.instr.credits_spent(credits, job.request.model if job.request else None)
        self._counts.credits_used = self.guard.spent
        self.feeder.wake()

    # ------------------------------------------------------------------ results

    def _timeout(self, job: Job, why: str, last: Generation | None = None) -> None:
        gid = job.gid
        assert gid is not None
        self.timed_out[job.index] = PendingJob(job.index, gid, job.request, job.key)
        self._finish(job, last, timed_out(gid, job.index, why, last))

    def _finish(
        self, job: Job, generation: Generation | None, error: VeoError | None = None
    ) -> None:
        if job.state is not JobState.TRACKING:
            return
        if error is None and generation is not None and generation.failed:
            error = generation_failed(job.index, generation)
        self.table.transition(job, JobState.FINISHED)
        now = _timing.monotonic()
        self.planner.finished(job, generation, now)  # learns; frees its server slot
        successor = self.planner.successor(now)
        if successor is not None and successor[0].state is JobState.TRACKING:
            self.scheduler.push(*successor)
        self._tighten_stretch(now)
        self.outbox.emit(
            BatchResult(
                job.index,
                job.request,
                job.key,
                generation_id=job.gid,
                generation=generation,
                error=error,
                submitted_at=job.submitted_wall,
                polls=job.polls,
            ),
            job,
        )
        self.scheduler.wake()
        self.feeder.wake()
