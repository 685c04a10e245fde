"""The bounded batch engine: submit many requests / track many ids, yield results as they finish.

PUBLIC SURFACE FIXED HERE (the CLI, the sync facade and the docs code against it); the
implementation of ``Batch`` is being written.

Why an async context manager around the iterator: the engine runs a task group (submitters,
pollers). An async generator cannot safely own a task group across ``yield`` (anyio's rule),
and a consumer that breaks out of ``async for`` must still get every background task
cancelled and every connection released before control returns. So::

    async with client.batch(prompts, max_concurrency=32) as batch:
        async for result in batch:
            ...
    batch.pending()   # submitted-but-unfinished ids, to resume with as_completed()
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._exceptions import VeoError
from ._models import Generation, VideoRequest
from ._polling import PollPolicy

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


@dataclass
class _Options:
    max_concurrency: int = 32
    requests_per_second: float | None = None
    poll_policy: PollPolicy | None = None
    job_timeout: float | None = 1000.0
    batch_timeout: float | None = None
    max_generations: int | None = None
    credit_budget: float | None = None
    observer: BatchObserver | None = None
    buffer: int = 64
    extra: dict[str, Any] = field(default_factory=dict)


class Batch:
    """A running batch; use as ``async with client.batch(...) as batch: async for r in batch``.

    Options (keyword-only): ``max_concurrency`` (HTTP requests in flight for this batch),
    ``requests_per_second`` (client-side rate shared by creates and polls), ``poll_policy``,
    ``job_timeout`` (seconds from submission; a timed-out job reports its id),
    ``batch_timeout`` (whole batch), ``max_generations`` and ``credit_budget`` (cost guard:
    stop submitting when either would be exceeded), ``observer`` (a :class:`BatchObserver`),
    ``buffer`` (results held for a slow consumer before submission pauses).
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
    ) -> None:
        raise NotImplementedError  # being written

    async def __aenter__(self) -> Batch:
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        raise NotImplementedError

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> BatchResult:
        raise NotImplementedError

    @property
    def counts(self) -> BatchCounts:
        """Live counters."""
        raise NotImplementedError

    def pending(self) -> list[PendingJob]:
        """Submitted-but-unfinished jobs (resume them with ``client.as_completed``)."""
        raise NotImplementedError

    def unsubmitted(self) -> list[tuple[int, BatchItem]]:
        """Inputs that were read but never submitted (e.g. after cancellation or a budget stop)."""
        raise NotImplementedError

    @property
    def stop_reason(self) -> str | None:
        """Why submission stopped early (budget, 401, 403, cancelled), if it did."""
        raise NotImplementedError
