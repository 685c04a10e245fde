"""The bounded batch engine: submit many requests / track many ids, yield results as they finish.

Why an async context manager around the iterator: the engine runs a task group (the input
feeder, the poll dispatcher and one short task per HTTP request in flight). An async generator
cannot safely own a task group across ``yield`` (anyio's rule: a cancellation or an exception
raised in a child could be delivered to whatever code the consumer runs between two
``yield``), and a consumer that breaks out of ``async for`` must still get every background task
cancelled and every connection released before control returns. The ``async with`` block is
that owner: leaving it (normally, by ``break``, by an exception or by cancellation of the
surrounding scope) stops submitting and polling, waits for the tasks, and only then returns::

    async with client.batch(prompts, max_concurrency=32) as batch:
        async for result in batch:          # completion order; result.index says which input
            ...
    batch.pending()      # submitted-but-unfinished jobs, to resume with client.as_completed()
    batch.unsubmitted()  # inputs read but never submitted

``client.as_completed(ids)`` is the same engine fed with ids only, so it yields the same
:class:`BatchResult` (failures typed the same way: timeout, failed generation, unknown id).

How it works (the shape of aiometer's bounded runner, plus a scheduler):

* **Scheduler, not a task per job.** Every tracked job is a small slotted record in a heap
  keyed by its next poll time; one dispatcher task pops due jobs. 100,000 tracked jobs cost a
  few hundred bytes each and no task.
* **Limiter.** ``max_concurrency`` bounds HTTP requests in flight (creates and polls alike):
  the feeder and the dispatcher acquire a semaphore slot *before* spawning the request task,
  which releases it when the response is in. An optional ``requests_per_second`` token bucket
  is shared by creates and polls of this batch; the client's :class:`~veo_async._ratelimit.
  RateGovernor` additionally pauses and paces everything after a 429.
* **Policy.** When to poll is decided by the pure :class:`~veo_async.PollPolicy` (learned
  schedule) and :class:`~veo_async._polling.QueueModel` (jobs queued behind the server's
  concurrency limit are not polled before they can have started).
* **Results** go through one anyio memory object stream. ``buffer`` bounds how many finished,
  unconsumed results may wait: beyond it the feeder stops reading inputs and submitting (polling
  goes on, so detection times stay honest).
* **Failures are results.** A job's failure never ends the batch: 400, a failed generation, a
  timeout, an unknown id (404), a create of unknown outcome all come back as a
  :class:`BatchResult` with a typed ``error``. Errors that make every further request pointless
  end it, raised out of ``async for`` / ``async with``: 401 (:class:`~veo_async.
  AuthenticationError`), a 404 on *create* (wrong ``base_url``/endpoint), and programming
  errors (including exceptions raised by observer hooks). A 403 on create (e.g. out of
  credits) stops submitting; what was submitted is still polled to the end.
* **Cancellation never loses an id.** A create already sent when the batch is cancelled runs
  on in a shielded scope for at most ``create_grace`` seconds so its id can be recorded (and
  ``after_submit`` called); if the grace runs out, the input is listed by :meth:`Batch.
  uncertain`. Ids that were recorded but whose result was not consumed are in
  :meth:`Batch.pending`.

``stop_reason`` values: ``"max_generations"``, ``"credit_budget"``, ``"permission_denied"``
(403 on create), ``"batch_timeout"``, ``"cancelled"`` (left early or cancelled),
``"authentication"`` (401), ``"not_found"`` (404 on create), ``"error"`` (a programming error).

Guarantees against a server that misbehaves (each enforced where the reply enters the engine):

* **Every input is accounted for once.** An input read is settled by one result (ok or
  failed), or listed by :meth:`Batch.unsubmitted` (provably never sent: not reached, refused
  with 403, cancelled before its create), or by :meth:`Batch.uncertain` (its create may have
  started a billed generation). An uncertain input is also yielded once, as a result whose
  error is :class:`~veo_async.CreateOutcomeUnknownError`; no other result is uncertain.
* **A create is sent at most once, and anything but a proven refusal is uncertain.** Once the
  request may have reached the server, any failure before a usable id (a reply that does not
  decode or parse, ``RecursionError``, any exception that is no ``VeoError``, a reply naming a
  blank id) makes the input uncertain, never unsubmitted. A create answered with an id the
  server already gave another input of the batch is uncertain too (with an error naming the
  id): the input that had the id keeps its job, and the second is never reported completed
  with the first one's video.
* **No status reply ends the batch.** A failed, unreadable or malformed status reply (any
  ``Exception`` from a poll, or a reply about another job's id) is one failed poll of that job:
  retried with back-off, and after ``max_poll_failures`` in a row the job is a failed result
  carrying the last error. Only a 401, a 404 on a create and a programming error (an
  observer hook raising) end a batch.
* **The credit guard never stops guarding.** ``credit_budget`` and ``estimated_credits_per_job``
  must be finite and >= 0. A cost the server does not give, or gives as NaN, infinite or
  negative, is no cost: such a job, and every create of unknown outcome, is charged at
  max(estimate, largest sane cost seen), from before its create is sent until the batch ends,
  never at zero. A create is sent only when what is spent, plus what is so charged, plus one
  more such charge fits the budget, checked again once a concurrency slot is free. So with an
  estimate and costs never known, at most ``floor(budget / estimate)`` creates are sent;
  credits can exceed the budget only by what the jobs in flight cost beyond the per-job charge
  they were admitted at. Without an estimate, one job at a time is in flight until a sane cost
  is seen, and a job whose cost stays unknown stops submission (``"credit_budget"``): nothing
  tells what the budget has left. ``max_generations`` counts creates of unknown outcome too.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import math
import numbers
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _timing
from ._exceptions import (
    APIConnectionError,
    AuthenticationError,
    CreateOutcomeUnknownError,
    GenerationFailedError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RequestValidationError,
    VeoError,
    WaitTimeoutError,
)
from ._models import Generation, GenerationStatus, VideoRequest, coerce_request
from ._polling import PollPolicy, QueueModel
from ._ratelimit import RateGovernor

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from ._client import AsyncVeoClient

__all__ = [
    "Batch",
    "BatchCounts",
    "BatchInput",
    "BatchItem",
    "BatchObserver",
    "BatchResult",
    "JobEvent",
    "NullObserver",
    "PendingJob",
]


@dataclass(frozen=True)
class BatchItem:
    """One unit of work: a request to submit, or an existing generation id to track.

    With ``generation_id`` set the item is not submitted again, only polled (resume). ``request``
    is then optional and only used for reporting and the first-poll estimate. ``key`` is your
    own label (a line number, a database id); it comes back on the result.
    """

    request: VideoRequest | None = None
    generation_id: str | None = None
    key: Hashable | None = None


#: What ``client.batch()`` accepts per input: a request model, a bare prompt (veo2), a mapping
#: of request fields (``{"prompt": ..., "model": ..., "duration": ...}``), or a ``BatchItem``.
BatchInput = VideoRequest | str | Mapping[str, Any] | BatchItem


@dataclass
class BatchResult:
    """The outcome of one input, yielded in completion order.

    ``ok`` is true when ``generation`` completed with a video. Otherwise ``error`` says why:
    :class:`~veo_async.GenerationFailedError`, :class:`~veo_async.WaitTimeoutError`,
    :class:`~veo_async.BadRequestError`, :class:`~veo_async.CreateOutcomeUnknownError`, ...
    ``generation_id`` is set whenever a generation exists (even on timeout).
    """

    index: int
    """Position of the input (0-based) in the order given."""
    request: VideoRequest | None
    """The request (``None`` when only an id was tracked)."""
    key: Hashable | None
    """Your label from :class:`BatchItem`, else ``None``."""
    generation_id: str | None = None
    """The generation id, when one was created."""
    generation: Generation | None = None
    """The last known state of the generation."""
    error: VeoError | None = None
    """Why this input failed, or ``None``."""
    submitted_at: float | None = None
    """``time.time()`` when the create returned."""
    finished_at: float | None = None
    """``time.time()`` when the result was produced."""
    polls: int = 0
    """Status requests spent on this job."""

    @property
    def ok(self) -> bool:
        """Whether the generation completed with a video."""
        return self.error is None and self.generation is not None and self.generation.succeeded


@dataclass(frozen=True)
class PendingJob:
    """A generation that was submitted but had not finished when the batch stopped."""

    index: int
    generation_id: str
    request: VideoRequest | None
    key: Hashable | None


@dataclass
class BatchCounts:
    """Live counters: inputs seen, waiting to submit, submitted, running, done, failed."""

    total_seen: int = 0
    queued: int = 0
    submitting: int = 0
    submitted: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    uncertain: int = 0
    rate_limited: int = 0
    status_requests: int = 0
    credits_used: float = 0.0


class JobEvent(enum.Enum):
    """Per-job events delivered to :class:`BatchObserver.on_event`."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    STATUS = "status"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BatchObserver(Protocol):
    """Hooks a batch calls; implement any subset by subclassing :class:`NullObserver`.

    ``before_submit`` is awaited before the create request is sent (write your intent to a
    durable journal there); ``after_submit`` right after the id is known (record it); the
    create is not considered done until both return. ``on_event`` / ``on_progress`` are cheap
    notifications and must not block.
    """

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        """Called before the create request for input ``index`` is sent."""

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        """Called once input ``index`` has a generation id."""

    async def on_result(self, result: BatchResult) -> None:
        """Called for every finished input, before it is yielded."""

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        """A per-job event."""

    def on_progress(self, counts: BatchCounts) -> None:
        """Counters changed."""


@dataclass
class NullObserver:
    """An observer that does nothing; subclass it and override what you need."""

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        """Does nothing."""

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        """Does nothing."""

    async def on_result(self, result: BatchResult) -> None:
        """Does nothing."""

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        """Does nothing."""

    def on_progress(self, counts: BatchCounts) -> None:
        """Does nothing."""


_SUBMITTING = 0
_TRACKING = 1
_FINISHED = 2
_DEFAULT_PRIOR = 45.0
_CANARY_EVERY = 16
_RUNNING = frozenset({GenerationStatus.GENERATING, GenerationStatus.ACTIVE})


def _other_leaves(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    """Whether ``group`` holds anything but ``exc`` and cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in group.exceptions:
        if isinstance(leaf, BaseExceptionGroup):
            if _other_leaves(leaf, exc):
                return True
        elif leaf is not exc and not isinstance(leaf, cancelled):
            return True
    return False


def _check_credits(name: str, value: object) -> float | None:
    """A credit figure given by the user: a finite number >= 0, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of credits or None, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(
            f"{name} must be a finite number of credits >= 0 (None for no "
            f"{'budget' if name == 'credit_budget' else 'estimate'}), got {value!r}"
        )
    return number


def _sane_credits(generation: Generation) -> float | None:
    """The cost the server reported, or ``None`` when it is missing or nonsense.

    A missing, non-finite (NaN, infinity) or negative figure is not a cost: the credit guard
    then counts the job at its estimate, never at zero.
    """
    try:
        raw = generation.credits_used
    except Exception:  # a figure pydantic kept but that is no number
        return None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _create_error(index: int, request: VideoRequest, exc: Exception) -> VeoError:
    """What a failed create means for its input; anything not proven harmless is uncertain.

    The client already reports a create that may have reached the server as
    :class:`CreateOutcomeUnknownError`. This is the engine's own line of defence: an exception
    that is no :class:`VeoError` (a ``RecursionError`` from a deeply nested reply, a raw
    transport or decoding error) or an error saying the request was sent or answered with an
    unreadable success is of unknown outcome too, never "not submitted". Only refusals (4xx,
    429, a create-safe 5xx), a connection never made and local validation keep their type.
    """
    if isinstance(exc, CreateOutcomeUnknownError):
        return exc
    if isinstance(exc, VeoError) and not (
        isinstance(exc, InvalidResponseError)
        or (isinstance(exc, APIConnectionError) and exc.request_sent)
    ):
        return exc
    detail = str(exc)[:200] or type(exc).__name__
    error = CreateOutcomeUnknownError(
        f"the create for input {index} may or may not have started a billed generation: it "
        f"failed after the request may have reached the server ({type(exc).__name__}: "
        f"{detail}). Resubmit only if a possible duplicate is acceptable",
        request=request,
        request_id=exc.request_id if isinstance(exc, VeoError) else None,
    )
    error.__cause__ = exc
    return error


def _unreadable_status(gid: str, exc: Exception) -> VeoError:
    """A status request that failed with something other than a :class:`VeoError`."""
    if isinstance(exc, VeoError):
        return exc
    detail = str(exc)[:200] or type(exc).__name__
    error = InvalidResponseError(
        f"GET status of generation {gid}: the reply could not be read ({type(exc).__name__}: "
        f"{detail})",
        method="GET",
    )
    error.__cause__ = exc
    return error


_GO = "go"
_WAIT = "wait"
_STOP = "stop"


def _credit_verdict(
    budget: float,
    spent: float,
    in_flight: int,
    settled_unknown: int,
    estimate: float | None,
    largest: float | None,
) -> str:
    """Whether one more create fits ``budget``: ``"go"``, ``"wait"`` or ``"stop"``.

    ``spent`` is the sum of the sane costs the server reported; ``in_flight`` counts jobs
    created or being created whose cost is not known yet (it may still become known and be
    lower than the estimate, so the guard waits for them); ``settled_unknown`` counts jobs that
    ended, or whose create is of unknown outcome, with no sane cost: they may have been
    charged and will never say what, so they stay charged. Every job of unknown cost is
    charged at the estimate or the largest cost seen, whichever is larger. With neither, one
    job at a time is in flight until a cost is seen, and a job whose cost stays unknown stops
    the guard: it can no longer tell what is left.
    """
    known = [x for x in (estimate, largest) if x is not None]
    per_job = max(known) if known else None
    if per_job is None:
        if in_flight:
            return _WAIT
        if settled_unknown or spent >= budget:
            return _STOP
        return _GO
    committed = spent + (in_flight + settled_unknown) * per_job
    if committed + per_job > budget + 1e-9 * max(1.0, budget):
        return _WAIT if in_flight else _STOP
    if spent >= budget:
        return _STOP
    return _GO


class _Job:
    """One input on its way: small and slotted, since 100,000 may be tracked at once."""

    __slots__ = (
        "anchor",
        "credits",
        "deadline",
        "due",
        "failures",
        "gid",
        "index",
        "key",
        "last_poll",
        "planned",
        "polls",
        "prior",
        "queued_seen",
        "rank",
        "request",
        "resumed",
        "running_seen",
        "started",
        "state",
        "submitted",
        "submitted_wall",
    )

    def __init__(
        self, index: int, request: VideoRequest | None, key: Hashable | None, state: int
    ) -> None:
        self.index = index
        self.request = request
        self.key = key
        self.state = state
        self.gid: str | None = None
        self.prior = request.expected_seconds() if request is not None else _DEFAULT_PRIOR
        self.planned = math.inf
        self.submitted = 0.0
        self.submitted_wall: float | None = None
        self.anchor = 0.0
        self.last_poll = 0.0
        self.deadline = math.inf
        self.due = 0.0
        self.polls = 0
        self.failures = 0
        self.rank = -1
        self.credits: float | None = None
        self.started = False
        self.queued_seen = False
        self.running_seen = False
        self.resumed = False


class Batch:
    """A running batch; use as ``async with client.batch(...) as batch: async for r in batch``.

    Options (keyword-only): ``max_concurrency`` (HTTP requests in flight for this batch),
    ``requests_per_second`` (client-side rate shared by creates and polls), ``poll_policy``,
    ``job_timeout`` (seconds from submission; a timed-out job reports its id),
    ``batch_timeout`` (whole batch), ``max_generations`` and ``credit_budget`` (cost guard:
    stop submitting when either would be exceeded), ``observer`` (a :class:`BatchObserver`),
    ``buffer`` (results held for a slow consumer before submission pauses).

    Added options: ``estimated_credits_per_job`` (the credit guard's estimate for a job whose
    cost is not known yet; without it the largest cost seen so far is used, and until one is
    seen only one job at a time is in flight), ``create_grace`` (seconds a create already sent
    may run on after cancellation so its id is recorded), ``max_poll_failures`` (consecutive
    failed status requests, each already retried by the client, before the job is reported
    failed with the last error).

    ``job_timeout`` ends tracking, not the generation: the result carries
    :class:`~veo_async.WaitTimeoutError` with the id, and the job stays in :meth:`pending`.
    With ``credit_budget`` and no estimate, jobs go one at a time until a cost is known, then
    each unknown cost counts as the largest seen. A job whose cost the server leaves unknown
    (missing or nonsense ``meta.usage``) is charged at the estimate or the largest cost seen,
    whichever is larger, and with neither it stops submission (see the module's guarantees).
    """

    def __init__(
        self,
        client: AsyncVeoClient,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        for name, value in (("job_timeout", job_timeout), ("batch_timeout", batch_timeout)):
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must not be negative")
        credit_budget = _check_credits("credit_budget", credit_budget)
        estimated_credits_per_job = _check_credits(
            "estimated_credits_per_job", estimated_credits_per_job
        )
        if max_generations is not None and max_generations < 0:
            raise ValueError("max_generations must not be negative")
        if create_grace < 0 or max_poll_failures < 1:
            raise ValueError("create_grace must be >= 0 and max_poll_failures >= 1")
        if isinstance(inputs, (str, bytes, Mapping)):
            raise TypeError(
                "inputs must be an iterable of inputs (a list of prompts, ...), not a single "
                f"{type(inputs).__name__}"
            )
        self._client = client
        self._inputs = inputs
        self.max_concurrency = max_concurrency
        self.job_timeout = job_timeout
        self.batch_timeout = batch_timeout
        self.max_generations = max_generations
        self.credit_budget = credit_budget
        self.estimated_credits_per_job = estimated_credits_per_job
        self.create_grace = create_grace
        self.max_poll_failures = max_poll_failures
        self.buffer = buffer
        self.policy: PollPolicy = poll_policy or client.poll_policy
        self._queue = (
            QueueModel(self.policy.queued_grace * self.policy.time_scale)
            if self.policy.queue_aware
            else None
        )
        self._observer = observer
        self._limiter = RateGovernor(requests_per_second) if requests_per_second else None
        self._counts = BatchCounts()
        self._jobs: dict[int, _Job] = {}
        self._timed_out: dict[int, PendingJob] = {}
        self._unsubmitted: dict[int, BatchItem] = {}
        self._uncertain: list[tuple[int, BatchItem]] = []
        self._ranks: list[_Job | float] = []
        self._finish_times: deque[float] = deque(maxlen=256)
        # every freed slot's time, sorted: the k-th is when the k-th slot came free
        self._freed: list[float] = []
        self._heap: list[tuple[float, int, _Job]] = []
        self._pushes = 0
        self._sem = anyio.Semaphore(max_concurrency)
        self._send: MemoryObjectSendStream[BatchResult] | None = None
        self._recv: MemoryObjectReceiveStream[BatchResult] | None = None
        self._outer: TaskGroup | None = None
        self._tg: TaskGroup | None = None
        self._shields: set[anyio.CancelScope] = set()
        self._batch_deadline = math.inf
        self._wake_ev: anyio.Event | None = None
        self._wake_at = math.inf
        self._feed_ev: anyio.Event | None = None
        self._feed_done = False
        self._run_done = False
        self._entered = False
        self._active = 0
        self._creating = 0
        self._created = 0
        self._stopping = False
        self._stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self._fatal_raised = False
        # The credit guard's books (see ``_credit_verdict``): the sum of the sane costs the
        # server reported; jobs created (or being created) whose cost is not known yet; jobs
        # that ended (or whose create is of unknown outcome) with no sane cost, which may
        # have been charged; the largest sane cost seen.
        self._credits_known = 0.0
        self._unknown_in_flight = 0
        self._unknown_settled = 0
        self._max_job_credits: float | None = None
        # every generation id this batch created or tracked, to its input index
        self._gids: dict[str, int] = {}
        self._rate_limited_base = client.governor.rate_limited

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise RuntimeError("a Batch can be entered only once")
        self._entered = True
        self._send, self._recv = anyio.create_memory_object_stream[BatchResult](math.inf)
        if self.batch_timeout is not None:
            self._batch_deadline = anyio.current_time() + self.batch_timeout
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
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
            if exc is not None and not _other_leaves(group, exc):
                return False
            raise
        finally:
            if self._recv is not None:
                self._recv.close()
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
        self._jobs.pop(result.index, None)
        self._feed_wake()
        if self._observer is not None:
            await self._observer.on_result(result)
        return result

    # ------------------------------------------------------------------ public state

    @property
    def counts(self) -> BatchCounts:
        """Live counters."""
        counts = self._counts
        counts.rate_limited = self._client.governor.rate_limited - self._rate_limited_base
        counts.queued = len(self._unsubmitted)
        return counts

    def pending(self) -> list[PendingJob]:
        """Submitted jobs whose result was not consumed, plus timed-out jobs, by index.

        Resume them later with ``client.as_completed([p.generation_id for p in pending])``.
        """
        out = dict(self._timed_out)
        for job in self._jobs.values():
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

    # ------------------------------------------------------------------ lifecycle internals

    async def _run(self) -> None:
        send = self._send
        assert send is not None
        try:
            with anyio.CancelScope() as scope:
                scope.deadline = self._batch_deadline
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._feed)
                    tg.start_soon(self._dispatch)
            if scope.cancelled_caught and self._fatal is None and not self._stopping:
                self._stop("batch_timeout")
                for job in list(self._jobs.values()):
                    if job.state == _TRACKING:
                        self._timeout(job, f"the batch timeout ({self.batch_timeout} s) passed")
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
        limit = anyio.current_time() + self.create_grace
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
        if self._outer is not None:
            # cancels the feeder, the dispatcher and polls; creates run on (shielded, bounded)
            tg = self._tg
            if tg is not None:
                tg.cancel_scope.cancel()

    def _progress(self) -> None:
        obs = self._observer
        if obs is not None:
            obs.on_progress(self.counts)

    def _event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        obs = self._observer
        if obs is not None:
            obs.on_event(index, event, generation)

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
            self._wake()

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
        while not self._stopping and recv.statistics().current_buffer_used >= self.buffer:
            await self._feed_wait()
        return not self._stopping

    async def _take(self, raw: BatchInput) -> None:
        index = self._counts.total_seen
        self._counts.total_seen += 1
        if isinstance(raw, BatchItem):
            item = raw
        else:
            try:
                request = coerce_request(raw)
            except RequestValidationError as exc:
                self._counts.failed += 1
                self._event(index, JobEvent.FAILED, None)
                self._emit(BatchResult(index, None, None, error=exc, finished_at=time.time()))
                return
            item = BatchItem(request=request)
        if item.generation_id is not None:
            self._track(index, item)
            return
        if item.request is None:
            raise TypeError(f"input {index}: a BatchItem needs a request or a generation_id")
        self._unsubmitted[index] = item
        while True:
            reason = await self._guard()
            if reason is not None:
                self._stop(reason)
                return
            await self._polls_first()
            await self._sem.acquire()
            try:
                if self._limiter is not None:
                    await self._limiter.acquire()
            except BaseException:
                self._sem.release()
                raise
            if self._stopping:
                self._sem.release()
                return
            if self._guard_verdict()[0] == _GO:
                break
            # While this create waited for a slot, other jobs reported what they cost (or
            # failed to): the guard is asked again before anything is reserved or sent.
            self._sem.release()
        job = _Job(index, item.request, item.key, _SUBMITTING)
        self._active += 1
        self._creating += 1
        self._unknown_in_flight += 1
        self._counts.submitting += 1
        tg = self._tg
        assert tg is not None
        tg.start_soon(self._create, job, item)

    async def _polls_first(self) -> None:
        """Due polls go before new creates, but only while the server has a deep queue.

        A create starts a job (about 45 s of work) earlier; a poll held back only detects a
        finished job a little later. So creates and due polls take turns at the semaphore
        (FIFO) by default, and polls go first only when the server is known to be saturated
        with at least two waves of this batch's jobs queued or running (a create then only
        joins the queue). Letting polls starve creates used to drain the server's queue:
        10,000 jobs on 1,000 slots lost a third of their makespan to idle slots.
        """
        if not self._deep_server_queue():
            return
        heap = self._heap
        while (
            heap
            and not self._stopping
            and heap[0][0] <= _timing.monotonic()
            and not _timing.waiting_disabled()
            and self._deep_server_queue()
        ):
            await self._feed_wait()  # the dispatcher wakes us when nothing is due

    def _deep_server_queue(self) -> bool:
        queue = self._queue
        if queue is None or not queue.saturated or queue.concurrency is None:
            return False
        outstanding = self._created - queue.done
        return outstanding >= 2 * queue.concurrency

    async def _guard(self) -> str | None:
        """Wait until the cost guard allows one more create; return a stop reason if never."""
        while True:
            verdict, reason = self._guard_verdict()
            if verdict == _GO:
                return None
            if verdict == _STOP:
                return reason
            await self._feed_wait()

    def _guard_verdict(self) -> tuple[str, str | None]:
        """The cost guard now: (``_GO``/``_WAIT``/``_STOP``, the stop reason)."""
        if self._stopping:
            return _STOP, self._stop_reason or "stopped"
        limit = self.max_generations
        # a create of unknown outcome may have made a generation: it counts
        made = self._created + self._creating + len(self._uncertain)
        if limit is not None and made >= limit:
            return (_WAIT, None) if self._creating else (_STOP, "max_generations")
        budget = self.credit_budget
        if budget is not None:
            verdict = _credit_verdict(
                budget,
                self._credits_known,
                self._unknown_in_flight,
                self._unknown_settled,
                self.estimated_credits_per_job,
                self._max_job_credits,
            )
            if verdict != _GO:
                return verdict, "credit_budget"
        return _GO, None

    def _track(self, index: int, item: BatchItem) -> None:
        assert item.generation_id is not None
        job = _Job(index, item.request, item.key, _TRACKING)
        job.gid = item.generation_id
        self._gids.setdefault(item.generation_id, index)
        job.resumed = True
        now = _timing.monotonic()
        job.submitted = job.anchor = job.last_poll = now
        job.started = True
        if self.job_timeout is not None:
            job.deadline = now + self.job_timeout
        self._active += 1
        self._counts.running += 1
        self._jobs[index] = job
        self._rank(job)
        self._push(job, now)

    def _rank(self, job: _Job) -> None:
        if self._queue is not None:
            job.rank = len(self._ranks)
            self._ranks.append(job)

    # ------------------------------------------------------------------ creates

    async def _create(self, job: _Job, item: BatchItem) -> None:
        released = False
        try:
            try:
                obs = self._observer
                request = job.request
                assert request is not None
                if obs is not None:
                    await obs.before_submit(job.index, item, request)
                self._event(job.index, JobEvent.SUBMITTING, None)
                with anyio.CancelScope(shield=True) as shield:
                    if self._stopping:
                        shield.deadline = anyio.current_time() + self.create_grace
                    elif math.isfinite(self._batch_deadline):
                        shield.deadline = self._batch_deadline + self.create_grace
                    self._shields.add(shield)
                    try:
                        self._unsubmitted.pop(job.index, None)
                        # From here on the request may reach the server: only a failure
                        # that provably started nothing leaves the input out of uncertain().
                        try:
                            generation = await self._client._create(request)
                        except AuthenticationError:
                            raise
                        except NotFoundError:
                            raise
                        except Exception as exc:
                            self._sem.release()
                            released = True
                            self._create_failed(job, item, _create_error(job.index, request, exc))
                            return
                        self._sem.release()
                        released = True
                        wrong_id = self._wrong_create_id(job, generation)
                        if wrong_id is not None:
                            self._create_failed(job, item, wrong_id)
                            return
                        self._register(job, generation)
                        if obs is not None:
                            await obs.after_submit(job.index, item, generation)
                    finally:
                        self._shields.discard(shield)
                if shield.cancelled_caught and job.gid is None and job.state == _SUBMITTING:
                    self._uncertain.append((job.index, item))
                    self._counts.uncertain += 1
                    self._counts.submitting -= 1
                    self._creating -= 1
                    self._unknown_in_flight -= 1
                    self._unknown_settled += 1  # it may have been created and charged
                    job.state = _FINISHED
                    self._active -= 1
            finally:
                if not released:
                    self._sem.release()
                if job.state == _SUBMITTING:
                    # cancelled before the request was sent (e.g. in before_submit)
                    self._unsubmitted[job.index] = item
                    self._counts.submitting -= 1
                    self._creating -= 1
                    self._unknown_in_flight -= 1
                    job.state = _FINISHED
                    self._active -= 1
                    self._wake()
        except Exception as exc:
            self._die(exc)

    def _register(self, job: _Job, generation: Generation) -> None:
        now = _timing.monotonic()
        job.gid = generation.id
        self._gids[generation.id] = job.index
        job.state = _TRACKING
        job.submitted = job.anchor = job.last_poll = now
        job.submitted_wall = time.time()
        if self.job_timeout is not None:
            job.deadline = now + self.job_timeout
        self._creating -= 1
        self._created += 1
        counts = self._counts
        counts.submitting -= 1
        counts.submitted += 1
        counts.running += 1
        self._jobs[job.index] = job
        self._rank(job)
        self._note_credits(job, generation)
        self._event(job.index, JobEvent.SUBMITTED, generation)
        self._progress()
        self._feed_wake()
        if generation.is_terminal:
            self._finish(job, generation)
            return
        due = self._plan(job, now)
        queue = self._queue
        if queue is not None and not queue.saturated and job.rank % _CANARY_EVERY == 0:
            # A canary: one job in 16 is looked at soon after the queue grace, so a server
            # that queues jobs behind its concurrency limit is noticed while it happens (a
            # first poll near the expected duration finds a queued job already generating,
            # and its duration would be learned from its submission).
            due = min(due, now + 1.5 * queue.grace)
        self._push(job, due)

    def _wrong_create_id(self, job: _Job, generation: Generation) -> VeoError | None:
        """A create answered with an id that cannot be this input's job, as an error.

        A blank id cannot be polled; an id the server already gave another input of this
        batch would report this input completed with that input's video. Either way the
        server may have started (and billed) a job for this input that cannot be tracked: the
        input is uncertain, and the job that owns the id goes on as it was.
        """
        gid = generation.id
        if not gid.strip():
            why = f"a blank generation id ({gid!r})"
        else:
            other = self._gids.get(gid)
            if other is None:
                return None
            why = (
                f"generation id {gid!r}, which the server had already given input {other}; "
                f"input {other} keeps that generation, and this input is not reported with its "
                "video"
            )
        return CreateOutcomeUnknownError(
            f"the create for input {job.index} was answered with {why}. A generation may have "
            "been started (and billed) for this input that cannot be tracked; resubmit only if "
            "a possible duplicate is acceptable",
            request=job.request,
        )

    def _create_failed(self, job: _Job, item: BatchItem, exc: VeoError) -> None:
        self._creating -= 1
        self._unknown_in_flight -= 1
        self._counts.submitting -= 1
        job.state = _FINISHED
        self._active -= 1
        if isinstance(exc, PermissionDeniedError):
            self._unsubmitted[job.index] = item
            self._stop("permission_denied")
        elif isinstance(exc, CreateOutcomeUnknownError):
            self._uncertain.append((job.index, item))
            self._counts.uncertain += 1
            self._unknown_settled += 1  # it may have been created and charged
        self._counts.failed += 1
        self._event(job.index, JobEvent.FAILED, None)
        self._emit(BatchResult(job.index, job.request, job.key, error=exc, finished_at=time.time()))
        self._wake()
        self._feed_wake()

    # ------------------------------------------------------------------ scheduling

    def _push(self, job: _Job, due: float) -> None:
        if due > job.deadline:
            due = job.deadline
        job.planned = due
        self._pushes += 1
        heapq.heappush(self._heap, (due, self._pushes, job))
        if self._wake_ev is not None and due < self._wake_at:
            self._wake()

    def _wake(self) -> None:
        ev = self._wake_ev
        if ev is not None:
            self._wake_ev = None
            self._wake_at = math.inf
            ev.set()

    async def _sleep_until(self, delay: float | None, at: float) -> None:
        self._feed_wake()  # nothing due: creates may go
        ev = self._wake_ev = anyio.Event()
        self._wake_at = at
        if delay is None:
            await ev.wait()
        else:
            with anyio.move_on_after(delay):
                await ev.wait()
        if self._wake_ev is ev:
            self._wake_ev = None
            self._wake_at = math.inf

    def _plan(self, job: _Job, now: float) -> float:
        """The next poll time of ``job`` (monotonic seconds)."""
        policy = self.policy
        queue = self._queue
        if queue is None or job.started:
            return now + policy.next_delay(now - job.anchor, job.prior, job.polls)
        before = queue.predecessor(job.rank)
        if before is not None:
            freed = self._slot_freed(before, policy)
            if freed > job.anchor:
                # Never later than when every job ahead of it will have finished at the
                # throughput seen so far (guards against an underestimated concurrency, a
                # non-FIFO server or slots taken by someone else).
                rate = self._throughput()
                if rate > 0:
                    ahead = max(1, job.rank - queue.done)
                    freed = min(freed, max(now, job.anchor) + ahead / rate)
                job.anchor = max(job.anchor, freed)
        return max(now, job.anchor + policy.first_delay(job.prior, rate_bound=self._rate_bound()))

    def _rate_bound(self) -> bool:
        """Whether requests are scarce: a rate limit decides when they go, and a create held
        back would cost makespan.

        Not while the server has a deep queue of this batch's jobs: a create then only joins
        the queue, so polls go first and need not be saved. (Counting such a batch as
        rate-bound put every first poll at ``bound_quantile`` while 10,000 creates used up
        the rate: a whole wave of detections came tens of seconds late.)
        """
        limiter = self._limiter
        held = self._client.governor.holding or (limiter is not None and limiter.holding)
        return held and not self._deep_server_queue()

    def _throughput(self) -> float:
        """Jobs finished per second over the recent finishes (0 when unknown)."""
        times = self._finish_times
        if len(times) < 8:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    async def _dispatch(self) -> None:
        heap = self._heap
        no_wait = _timing.waiting_disabled
        try:
            while True:
                if self._feed_done and self._active == 0:
                    return
                if not heap:
                    await self._sleep_until(None, math.inf)
                    continue
                due, _, job = heap[0]
                now = _timing.monotonic()
                if due > now and not no_wait():
                    await self._sleep_until(due - now, due)
                    continue
                heapq.heappop(heap)
                if job.state != _TRACKING or due != job.planned:
                    continue  # finished, or planned again (an earlier entry replaced it)
                if self._queue is not None and not job.started and due < job.deadline:
                    later = min(self._plan(job, now), job.deadline)
                    if later > due + 1e-6 and later > now and not no_wait():
                        self._push(job, later)
                        continue
                await self._sem.acquire()
                try:
                    if self._limiter is not None:
                        await self._limiter.acquire()
                except BaseException:
                    self._sem.release()
                    raise
                job.due = due
                tg = self._tg
                assert tg is not None
                tg.start_soon(self._poll, job)
        except Exception as exc:
            self._die(exc)

    # ------------------------------------------------------------------ polls

    async def _poll(self, job: _Job) -> None:
        try:
            gid = job.gid
            assert gid is not None
            try:
                try:
                    generation = await self._client.get(gid)
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
                self._poll_failed(job, _unreadable_status(gid, exc))
                return
            if generation.id != gid:
                self._poll_failed(
                    job,
                    InvalidResponseError(
                        f"GET status of generation {gid} (input {job.index}) was answered "
                        f"with generation {generation.id!r}: a reply about another job is not "
                        "taken for this one",
                        method="GET",
                    ),
                )
                return
            self._observed(job, generation)
        except Exception as exc:
            self._die(exc)

    def _poll_failed(self, job: _Job, exc: VeoError) -> None:
        """A status request failed (after the client's retries): back off, or give up."""
        job.failures += 1
        now = _timing.monotonic()
        if job.failures >= self.max_poll_failures:
            self._finish(job, None, exc)
        elif now >= job.deadline:
            self._timeout(job, f"did not finish within {self.job_timeout} s")
        else:
            # (service seconds, like every SDK wait: scaled with the client)
            backoff = min(60.0, 2.0**job.failures) * self._client.time_scale
            self._push(job, now + backoff)

    def _observed(self, job: _Job, generation: Generation) -> None:
        now = _timing.monotonic()
        job.failures = 0
        self._note_credits(job, generation)
        self._event(job.index, JobEvent.STATUS, generation)
        status = generation.status
        queue = self._queue
        if generation.is_terminal:
            if status is GenerationStatus.COMPLETED and not job.resumed and self.policy.learn:
                # Completed by this poll. A late poll (a busy event loop, a rate limit) must
                # not teach the policy that jobs are slow, or the first poll would drift later
                # and later: take the planned time as the upper end.
                anchor = self._start_estimate(job)
                if anchor is not None:
                    upper = min(now, job.due)
                    if job.running_seen:
                        # the previous poll saw it generating: it finished in between
                        lower = max(job.last_poll, anchor)
                        self.policy.observe(0.5 * (lower + upper) - anchor, job.prior)
                    else:
                        # found done with no sighting of it running: an upper bound only
                        # (before anything is learned below it: half a step before)
                        step = self.policy.step(job.prior)
                        guess = 0.5 * (max(upper - step, anchor) + upper) - anchor
                        self.policy.observe_at_most(
                            upper - anchor, job.prior, fallback_seconds=guess
                        )
            if queue is not None:
                queue.saw_started(job.rank)
            self._finish(job, generation)
            return
        if status is GenerationStatus.QUEUED:
            if queue is not None:
                waited = now - job.submitted
                queue.saw_queued(job.rank, waited)
                if waited >= queue.grace or job.resumed:
                    job.queued_seen = True
                    job.started = False
                    job.anchor = max(job.anchor, now)
        elif status in _RUNNING and not job.started:
            if job.queued_seen or job.anchor > now:
                job.anchor = min(now, max(job.last_poll, 0.5 * (job.last_poll + now)))
            job.started = True
            if queue is not None:
                queue.saw_started(job.rank)
        job.last_poll = now
        job.running_seen = status in _RUNNING
        if now >= job.deadline:
            self._timeout(job, f"did not finish within {self.job_timeout} s", generation)
            return
        self._push(job, self._plan(job, now))

    def _replan_successor(self, now: float) -> None:
        """A slot came free: the queued job that takes it may be due earlier than planned.

        Its first poll was planned from a predicted start (a chain of expected durations);
        now the start is known, so plan it again when that is earlier.
        """
        queue = self._queue
        if queue is None or queue.concurrency is None or not queue.saturated:
            return
        rank = len(self._freed) - 1 + queue.concurrency
        if not 0 <= rank < len(self._ranks):
            return
        job = self._ranks[rank]
        if isinstance(job, float) or job.state != _TRACKING or job.started:
            return
        due = self._plan(job, now)
        if due < job.planned - 1e-6:
            self._push(job, due)

    def _start_estimate(self, job: _Job) -> float | None:
        """When ``job`` started on the server, for learning its duration; ``None``: unknown.

        A job never seen ``queued`` is anchored at its submission. That is right on a server
        with free slots, but once the server is known to be saturated, a job of this batch
        that had a predecessor in the FIFO queue started no earlier than that predecessor
        finished: learning from the submission time taught the policy that jobs take twice
        as long, and each wave of a long queue was then detected later than the one before.
        """
        queue = self._queue
        if queue is None or job.queued_seen or not queue.saturated:
            return job.anchor
        before = queue.predecessor(job.rank)
        if before is None:
            return job.anchor
        if before >= len(self._freed):
            return None  # fewer slots have come free than it needed: a non-FIFO server
        return max(job.anchor, self._freed[before])

    def _slot_freed(self, before: int, policy: PollPolicy) -> float:
        """When the slot that the job ``before + concurrency`` waits for comes free.

        On a FIFO server that job starts at the ``before``-th slot freed (counting in time
        order, whichever job it was), so a completion seen is used as it is; only when fewer
        have been seen is the job of rank ``before`` predicted.
        """
        freed = self._freed
        if before < len(freed):
            return freed[before]
        slot = self._ranks[before]
        return slot if isinstance(slot, float) else slot.anchor + policy.expected(slot.prior)

    def _note_credits(self, job: _Job, generation: Generation) -> None:
        credits = _sane_credits(generation)
        if credits is None:
            return  # missing or nonsense: the job stays charged at the estimate
        previous = job.credits
        if previous is None:
            if not job.resumed:
                self._unknown_in_flight -= 1
            self._credits_known += credits
        else:
            self._credits_known += credits - previous
        job.credits = credits
        if self._max_job_credits is None or credits > self._max_job_credits:
            self._max_job_credits = credits
        self._counts.credits_used = self._credits_known
        self._feed_wake()

    # ------------------------------------------------------------------ results

    def _timeout(self, job: _Job, why: str, last: Generation | None = None) -> None:
        gid = job.gid
        assert gid is not None
        error = WaitTimeoutError(
            f"generation {gid} (input {job.index}) {why}; it may still complete: resume it "
            f"with client.as_completed([{gid!r}]) or client.wait({gid!r})",
            generation_id=gid,
            last=last,
        )
        self._timed_out[job.index] = PendingJob(job.index, gid, job.request, job.key)
        self._finish(job, last, error)

    def _finish(
        self, job: _Job, generation: Generation | None, error: VeoError | None = None
    ) -> None:
        if job.state == _FINISHED:
            return
        job.state = _FINISHED
        self._active -= 1
        counts = self._counts
        counts.running -= 1
        if error is None and generation is not None and generation.failed:
            reason = generation.error_message or "completed without a video URL"
            error = GenerationFailedError(
                f"generation {generation.id} (input {job.index}) failed: {reason}",
                generation=generation,
            )
        if error is None:
            counts.done += 1
        else:
            counts.failed += 1
        if job.credits is None and not job.resumed:
            # ended with no sane cost (no meta.usage, a failure, a timeout): it may have been
            # charged, so it stays charged at the estimate
            self._unknown_in_flight -= 1
            self._unknown_settled += 1
        now = _timing.monotonic()
        if self._queue is not None and job.rank >= 0:
            # When the server freed the slot: it finished after the previous poll and by
            # this one; within that, where its expected duration puts it. (Taking the time
            # of this poll instead made every wave of a long queue inherit the detection
            # delay of the wave before it: the lag grew by tens of seconds per wave.)
            expected = job.anchor + self.policy.expected(job.prior)
            freed = min(now, max(job.last_poll, expected))
            self._queue.finished()
            self._ranks[job.rank] = freed
            self._finish_times.append(freed)
            bisect.insort(self._freed, freed)  # nearly in order: cheap
            self._replan_successor(now)
        self._event(job.index, JobEvent.SUCCEEDED if error is None else JobEvent.FAILED, generation)
        self._emit(
            BatchResult(
                job.index,
                job.request,
                job.key,
                generation_id=job.gid,
                generation=generation,
                error=error,
                submitted_at=job.submitted_wall,
                finished_at=time.time(),
                polls=job.polls,
            )
        )
        self._wake()
        self._feed_wake()

    def _emit(self, result: BatchResult) -> None:
        send = self._send
        assert send is not None
        send.send_nowait(result)
        self._progress()
