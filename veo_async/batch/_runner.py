"""The runner: :class:`Batch` owns the task group that feeds inputs, creates and polls.

Its parts: the feeder reads inputs and, when the cost guard (``_guard.py``) and a
concurrency slot allow, starts one short task per create; the dispatcher takes due jobs from
the scheduler (``_scheduler.py``) and starts one short task per poll; every reply goes to the
poll planner (:class:`~veo_async.polling.BatchPlanner`), which says when to look again; every
state change goes through the job table (``_jobs.py``); results leave through one memory
object stream. See the package docstring for why a context manager and for the guarantees.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import _timing
from .._exceptions import (
    AuthenticationError,
    CreateOutcomeUnknownError,
    NotFoundError,
    PermissionDeniedError,
    RequestValidationError,
    VeoError,
)
from .._models import Generation, coerce_request
from ..instrumentation import Span
from ..polling import BatchPlanner, PollPolicy
from ..ratelimit import RateGovernor
from ._api import JobsAPI
from ._errors import (
    create_error,
    generation_failed,
    other_leaves,
    timed_out,
    unreadable_status,
    wrong_id,
    wrong_reply,
)
from ._guard import CostGuard, Verdict, sane_credits
from ._jobs import Job, JobState, JobTable
from ._options import BatchOptions
from ._results import BatchCounts, BatchInput, BatchItem, BatchResult, JobEvent, PendingJob
from ._scheduler import Scheduler

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Batch"]


class Batch:
    """A running batch; use as ``async with client.batch(...) as batch: async for r in batch``.

    Made by ``client.batch()`` / ``client.as_completed()`` with a :class:`BatchOptions`
    (every option is documented there). ``job_timeout`` ends tracking, not the generation:
    the result carries :class:`~veo_async.WaitTimeoutError` with the id, and the job stays in
    :meth:`pending`. The cost guard's rules are in the package docstring.
    """

    def __init__(
        self,
        api: JobsAPI,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: BatchOptions | None = None,
    ) -> None:
        if isinstance(inputs, (str, bytes, Mapping)):
            raise TypeError(
                "inputs must be an iterable of inputs (a list of prompts, ...), not a single "
                f"{type(inputs).__name__}"
            )
        self.options = options = options or BatchOptions()
        self._api = api
        self._inputs = inputs
        self._observer = options.observer
        self.policy: PollPolicy = options.poll_policy or api.poll_policy
        rps = options.requests_per_second
        self._limiter = RateGovernor(rps) if rps else None
        self._planner: BatchPlanner[Job] = BatchPlanner(
            self.policy, holding=self._holding, failure_time_scale=api.time_scale
        )
        self._counts = BatchCounts()
        self._guard = CostGuard(
            options.max_generations, options.credit_budget, options.estimated_credits_per_job
        )
        self._table = JobTable(self._counts, self._guard)
        self._scheduler = Scheduler(idle=self._feed_wake)
        self._instr = api.instrumentation
        self._span: Span | None = None
        self._timed_out: dict[int, PendingJob] = {}
        self._unsubmitted: dict[int, BatchItem] = {}
        self._uncertain: list[tuple[int, BatchItem]] = []
        self._sem = anyio.Semaphore(options.max_concurrency)
        self._send: MemoryObjectSendStream[BatchResult] | None = None
        self._recv: MemoryObjectReceiveStream[BatchResult] | None = None
        self._outer: TaskGroup | None = None
        self._tg: TaskGroup | None = None
        self._shields: set[anyio.CancelScope] = set()
        self._batch_deadline = math.inf
        self._feed_ev: anyio.Event | None = None
        self._feed_done = self._run_done = self._entered = self._stopping = False
        self._stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self._fatal_raised = False
        self._rate_limited_base = api.governor.rate_limited

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise RuntimeError("a Batch can be entered only once")
        self._entered = True
        self._send, self._recv = anyio.create_memory_object_stream[BatchResult](math.inf)
        if self.options.batch_timeout is not None:
            self._batch_deadline = anyio.current_time() + self.options.batch_timeout
        self._span = self._instr.start_batch()
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        with self._instr.use(self._span):  # every task spawned from here on inherits it
            outer.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        outer = self._outer
        if outer is None:
            return None
        if not self._run_done:
            self._stop("cancelled")
            self._begin_cancel()
            outer.cancel_scope.cancel()
        try:
            suppress = await outer.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The tasks never raise (they record fatal errors), so a group can only wrap the
            # exception of the ``async with`` body, plus cancellations: let that one through.
            if exc is not None and not other_leaves(group, exc):
                return False
            raise
        finally:
            if self._recv is not None:
                self._recv.close()
            self._end_batch_span()
        fatal = self._fatal
        if fatal is not None and not self._fatal_raised and exc is None:
            self._fatal_raised = True
            raise fatal
        return suppress

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> BatchResult:
        recv = self._recv
        if recv is None:
            raise RuntimeError("iterate a batch inside `async with client.batch(...) as batch:`")
        try:
            result = await recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            fatal = self._fatal
            if fatal is not None and not self._fatal_raised:
                self._fatal_raised = True
                raise fatal from None
            raise StopAsyncIteration from None
        self._table.consumed(result.index)
        self._feed_wake()
        if self._observer is not None:
            await self._observer.on_result(result)
        return result

    # ------------------------------------------------------------------ public state

    @property
    def counts(self) -> BatchCounts:
        """Live counters."""
        counts = self._counts
        counts.rate_limited = self._api.governor.rate_limited - self._rate_limited_base
        counts.queued = len(self._unsubmitted)
        return counts

    def pending(self) -> list[PendingJob]:
        """Submitted jobs whose result was not consumed, plus timed-out jobs, by index.

        Resume them later with ``client.as_completed([p.generation_id for p in pending])``.
        """
        out = dict(self._timed_out)
        for job in self._table.jobs.values():
            if job.gid is not None and job.index not in out:
                out[job.index] = PendingJob(job.index, job.gid, job.request, job.key)
        return [out[i] for i in sorted(out)]

    def unsubmitted(self) -> list[tuple[int, BatchItem]]:
        """Inputs that were read but never submitted (e.g. after cancellation or a budget stop).

        Includes inputs whose create was refused with 403. Inputs not read at all start at
        index ``counts.total_seen`` of your input sequence.
        """
        return sorted(self._unsubmitted.items(), key=lambda kv: kv[0])

    def uncertain(self) -> list[tuple[int, BatchItem]]:
        """Inputs whose create may or may not have started a (billed) generation.

        A create of unknown outcome (:class:`~veo_async.CreateOutcomeUnknownError`: the request
        may have reached the server and no usable id came back, including a blank id or an id
        the server had already given another input), or a create still unanswered
        ``create_grace`` seconds after the batch was cancelled. Each input is listed once;
        resubmit one only if paying twice is acceptable.
        """
        return list(self._uncertain)

    @property
    def stop_reason(self) -> str | None:
        """Why submission stopped early (budget, 401, 403, cancelled), if it did.

        ``None`` when every input was read and submitted; a failed job, a failed poll or a
        create of unknown outcome does not stop a batch.
        """
        return self._stop_reason

    # ------------------------------------------------------------------ lifecycle

    async def _run(self) -> None:
        send = self._send
        assert send is not None
        try:
            with anyio.CancelScope(deadline=self._batch_deadline) as scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._feed)
                    tg.start_soon(self._dispatch)
            if scope.cancelled_caught and self._fatal is None and not self._stopping:
                self._stop("batch_timeout")
                for job in list(self._table.jobs.values()):
                    if job.state is JobState.TRACKING:
                        why = f"the batch timeout ({self.options.batch_timeout} s) passed"
                        self._timeout(job, why)
        finally:
            self._run_done = True
            send.close()

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stopping = True
        self._feed_wake()

    def _begin_cancel(self) -> None:
        """Give creates in flight ``create_grace`` seconds to come back with their id."""
        self._stopping = True
        limit = anyio.current_time() + self.options.create_grace
        for shield in self._shields:
            shield.deadline = min(shield.deadline, limit)

    def _die(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            if isinstance(exc, AuthenticationError):
                self._stop("authentication")
            elif isinstance(exc, NotFoundError):
                self._stop("not_found")
            else:
                self._stop("error")
        self._begin_cancel()
        # cancels the feeder, the dispatcher and polls; creates run on (shielded, bounded)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        if self._observer is not None:
            self._observer.on_event(index, event, generation)

    def _holding(self) -> bool:
        """Whether a rate limit (the client's, or this batch's) is holding requests back."""
        limiter = self._limiter
        return self._api.governor.holding or (limiter is not None and limiter.holding)

    async def _slot(self) -> None:
        """A concurrency slot, then this batch's rate (the slot is given back on failure)."""
        await self._sem.acquire()
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
        except BaseException:
            self._sem.release()
            raise

    # ------------------------------------------------------------------ feeder

    def _feed_wake(self) -> None:
        ev = self._feed_ev
        if ev is not None:
            self._feed_ev = None
            ev.set()

    async def _feed_wait(self) -> None:
        ev = self._feed_ev
        if ev is None:
            ev = self._feed_ev = anyio.Event()
        await ev.wait()

    async def _feed(self) -> None:
        try:
            source = self._inputs
            if isinstance(source, AsyncIterable):
                await self._feed_async(source.__aiter__())
            else:
                await self._feed_sync(iter(source))
        except Exception as exc:
            self._die(exc)
        finally:
            self._feed_done = True
            self._scheduler.wake()

    async def _feed_async(self, it: AsyncIterator[BatchInput]) -> None:
        while await self._room():
            try:
                raw = await it.__anext__()
            except StopAsyncIteration:
                return
            await self._take(raw)

    async def _feed_sync(self, it: Iterator[BatchInput]) -> None:
        while await self._room():
            try:
                raw = next(it)
            except StopIteration:
                return
            await self._take(raw)
            await anyio.lowlevel.checkpoint()

    async def _room(self) -> bool:
        """Wait while too many finished results are unconsumed; false once stopping."""
        recv = self._recv
        assert recv is not None
        while not self._stopping and recv.statistics().current_buffer_used >= self.options.buffer:
            await self._feed_wait()
        return not self._stopping

    async def _take(self, raw: BatchInput) -> None:
        index = self._counts.total_seen
        self._counts.total_seen += 1
        if isinstance(raw, BatchItem):
            item = raw
        else:
            try:
                item = BatchItem(request=coerce_request(raw))
            except RequestValidationError as exc:
                self._emit(BatchResult(index, None, None, error=exc, finished_at=time.time()))
                return
        if item.generation_id is not None:
            self._track(index, item)
            return
        if item.request is None:
            raise TypeError(f"input {index}: a BatchItem needs a request or a generation_id")
        self._unsubmitted[index] = item
        if not await self._admit():
            return
        job = self._new_job(index, item)
        self._table.transition(job, JobState.SUBMITTING)
        assert self._tg is not None
        self._tg.start_soon(self._create, job, item)

    async def _admit(self) -> bool:
        """Wait until one more create may go and a slot is held for it; false: stop."""
        while True:
            verdict, reason = self._verdict()
            while verdict is Verdict.WAIT:
                await self._feed_wait()
                verdict, reason = self._verdict()
            if verdict is Verdict.STOP:
                self._stop(reason or "stopped")
                return False
            await self._polls_first()
            await self._slot()
            if self._stopping:
                self._sem.release()
                return False
            if self._verdict()[0] is Verdict.GO:
                return True
            # While this create waited for a slot, other jobs reported what they cost (or
            # failed to): the guard is asked again before anything is reserved or sent.
            self._sem.release()

    def _verdict(self) -> tuple[Verdict, str | None]:
        if self._stopping:
            return Verdict.STOP, self._stop_reason or "stopped"
        return self._guard.verdict(self._table.made, self._table.creating)

    async def _polls_first(self) -> None:
        """Due polls go before new creates, but only while the server has a deep queue.

        A create starts a job (about 45 s of work) earlier; a poll held back only detects a
        finished job a little later. So creates and due polls take turns at the semaphore
        (FIFO) by default, and polls go first only when the server is known to be saturated
        with at least two waves of this batch's jobs queued or running (a create then only
        joins the queue).
        """
        planner = self._planner
        while (
            planner.deep_queue
            and not self._stopping
            and self._scheduler.earliest() <= _timing.monotonic()
            and not _timing.waiting_disabled()
        ):
            await self._feed_wait()  # the dispatcher wakes us when nothing is due

    def _new_job(self, index: int, item: BatchItem) -> Job:
        job = Job(index, item.request, item.key)
        request = job.request
        job.span = self._instr.start_job(
            self._span,
            index,
            request.model if request is not None else None,
            request.prompt if request is not None else None,
        )
        return job

    def _track(self, index: int, item: BatchItem) -> None:
        job = self._new_job(index, item)
        job.gid = item.generation_id
        job.resumed = job.started = True
        now = _timing.monotonic()
        job.submitted = job.anchor = job.last_poll = now
        if self.options.job_timeout is not None:
            job.deadline = now + self.options.job_timeout
        self._table.transition(job, JobState.TRACKING)
        self._planner.add(job)
        self._scheduler.push(job, self._planner.first_poll(job, now))

    # ------------------------------------------------------------------ creates

    async def _create(self, job: Job, item: BatchItem) -> None:
        try:
            try:
                await self._submit(job, item)
            finally:
                if job.state is JobState.SUBMITTING:
                    # cancelled before the request was sent (e.g. in before_submit)
                    self._unsubmitted[job.index] = item
                    self._table.transition(job, JobState.UNSENT)
                    self._end_span(job, None, None)
                    self._scheduler.wake()
        except Exception as exc:
            self._die(exc)

    async def _submit(self, job: Job, item: BatchItem) -> None:
        request = job.request
        assert request is not None
        obs = self._observer
        sending = False
        try:
            if obs is not None:
                await obs.before_submit(job.index, item, request)
            self._event(job.index, JobEvent.SUBMITTING, None)
            with anyio.CancelScope(shield=True) as shield:
                if self._stopping:
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
                self._uncertain.append((job.index, item))
                self._table.transition(job, JobState.UNCERTAIN)
                self._end_span(job, None, None)
        finally:
            if not sending:
                self._sem.release()

    async def _send_create(self, job: Job, item: BatchItem) -> Generation | None:
        """Send the create; the new generation, or ``None`` when the input failed."""
        request = job.request
        assert request is not None
        self._unsubmitted.pop(job.index, None)
        # From here on the request may reach the server: only a failure that provably
        # started nothing leaves the input out of uncertain().
        try:
            try:
                with self._instr.use(job.span):
                    generation = await self._api.create(request)
            finally:
                self._sem.release()
        except (AuthenticationError, NotFoundError):
            raise
        except Exception as exc:
            self._create_failed(job, item, create_error(job.index, request, exc))
            return None
        gid = generation.id
        if not gid.strip() or gid in self._table.gids:
            other = self._table.gids.get(gid) if gid.strip() else None
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
        self._table.transition(job, JobState.TRACKING)
        self._planner.add(job)
        self._note_credits(job, generation)
        self._event(job.index, JobEvent.SUBMITTED, generation)
        self._progress()
        self._feed_wake()
        if generation.is_terminal:
            self._finish(job, generation)
        else:
            self._scheduler.push(job, self._planner.first_poll(job, now))

    def _create_failed(self, job: Job, item: BatchItem, exc: VeoError) -> None:
        if isinstance(exc, CreateOutcomeUnknownError):
            self._uncertain.append((job.index, item))
            self._table.transition(job, JobState.UNCERTAIN)
        else:
            self._table.transition(job, JobState.REFUSED)
            if isinstance(exc, PermissionDeniedError):
                self._unsubmitted[job.index] = item
                self._stop("permission_denied")
        self._emit(BatchResult(job.index, job.request, job.key, error=exc), job)
        self._scheduler.wake()
        self._feed_wake()

    # ------------------------------------------------------------------ polls

    async def _dispatch(self) -> None:
        try:
            finished = self._all_done
            while (popped := await self._scheduler.next_due(finished)) is not None:
                job, due, now = popped
                if self._postpone(job, due, now):
                    continue
                await self._slot()
                job.due = due
                assert self._tg is not None
                self._tg.start_soon(self._poll, job)
        except Exception as exc:
            self._die(exc)

    def _all_done(self) -> bool:
        return self._feed_done and self._table.active == 0

    def _postpone(self, job: Job, due: float, now: float) -> bool:
        """Push a due job back when it cannot have started yet (queued behind the limit)."""
        if due >= job.deadline:
            return False
        later = self._planner.recheck(job, now)
        if later is None:
            return False
        later = min(later, job.deadline)
        if later > due + 1e-6 and later > now and not _timing.waiting_disabled():
            self._scheduler.push(job, later)
            return True
        return False

    async def _poll(self, job: Job) -> None:
        try:
            gid = job.gid
            assert gid is not None
            try:
                try:
                    with self._instr.use(job.span):
                        generation = await self._api.get(gid)
                finally:
                    self._sem.release()
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
            self._die(exc)

    def _poll_failed(self, job: Job, exc: VeoError) -> None:
        """A status request failed (after the client's retries): back off, or give up."""
        job.failures += 1
        now = _timing.monotonic()
        if job.failures >= self.options.max_poll_failures:
            self._finish(job, None, exc)
        elif now >= job.deadline:
            self._timeout(job, f"did not finish within {self.options.job_timeout} s")
        else:
            self._scheduler.push(job, self._planner.after_failure(job, now))

    def _observed(self, job: Job, generation: Generation) -> None:
        now = _timing.monotonic()
        job.failures = 0
        self._note_credits(job, generation)
        self._event(job.index, JobEvent.STATUS, generation)
        if generation.is_terminal:
            self._instr.detected(now - job.last_poll)
            self._finish(job, generation)
            return
        self._planner.seen(job, generation, now)
        if now >= job.deadline:
            self._timeout(job, f"did not finish within {self.options.job_timeout} s", generation)
            return
        self._scheduler.push(job, self._planner.plan(job, now))

    def _note_credits(self, job: Job, generation: Generation) -> None:
        credits = sane_credits(generation)
        if credits is None:
            return  # missing or nonsense: the job stays charged at the estimate
        previous = job.credits
        self._guard.cost_known(previous, credits, counted=not job.resumed)
        job.credits = credits
        if previous is None:
            self._instr.credits_spent(credits, job.request.model if job.request else None)
        self._counts.credits_used = self._guard.spent
        self._feed_wake()

    # ------------------------------------------------------------------ results

    def _timeout(self, job: Job, why: str, last: Generation | None = None) -> None:
        gid = job.gid
        assert gid is not None
        self._timed_out[job.index] = PendingJob(job.index, gid, job.request, job.key)
        self._finish(job, last, timed_out(gid, job.index, why, last))

    def _finish(
        self, job: Job, generation: Generation | None, error: VeoError | None = None
    ) -> None:
        if job.state is not JobState.TRACKING:
            return
        if error is None and generation is not None and generation.failed:
            error = generation_failed(job.index, generation)
        self._table.transition(job, JobState.FINISHED)
        now = _timing.monotonic()
        self._planner.finished(job, generation, now)  # learns; frees its server slot
        successor = self._planner.successor(now)
        if successor is not None and successor[0].state is JobState.TRACKING:
            self._scheduler.push(*successor)
        self._emit(
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
        self._scheduler.wake()
        self._feed_wake()

    def _emit(self, result: BatchResult, job: Job | None = None) -> None:
        """Count a result, tell the observer, close the job's span, and send it."""
        ok = result.error is None
        if ok:
            self._counts.done += 1
        else:
            self._counts.failed += 1
        self._event(result.index, JobEvent.SUCCEEDED if ok else JobEvent.FAILED, result.generation)
        if job is not None:
            self._end_span(job, result.generation, result.error)
        result.finished_at = time.time()
        send = self._send
        assert send is not None
        send.send_nowait(result)
        self._progress()

    def _progress(self) -> None:
        if self._observer is not None:
            self._observer.on_progress(self.counts)

    def _end_span(
        self, job: Job, generation: Generation | None, error: BaseException | None
    ) -> None:
        span = job.span
        if span is None:
            return
        job.span = None
        span.set("veo.generation_id", job.gid)
        if generation is not None:
            span.set("veo.status", str(generation.status))
        if error is not None:
            span.fail(error)
        span.end()

    def _end_batch_span(self) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        span.set("veo.batch.inputs", self._counts.total_seen)
        span.set("veo.batch.stop_reason", self._stop_reason)
        if self._fatal is not None:
            span.fail(self._fatal)
        span.end()
