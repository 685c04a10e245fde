"""What a batch gives back: results, pending jobs, live counters, and the observer hooks."""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._exceptions import VeoError
from .._models import Generation, VideoRequest

__all__ = [
    "BatchCounts",
    "BatchInput",
    "BatchItem",
    "BatchObserver",
    "BatchResult",
    "InputTaken",
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


class InputTaken(Exception):
    """Raised by :meth:`BatchObserver.before_submit` to leave an input out: another worker of
    the same durable batch has taken it. Nothing is sent and no result is yielded for it."""


class BatchObserver(Protocol):
    """Hooks a batch calls; implement any subset by subclassing :class:`NullObserver`.

    ``before_submit`` is awaited before the create request is sent (write your intent to a
    durable journal there; raise :class:`InputTaken` to skip the input); ``after_submit``
    right after the id is known (record it); the create is not considered done until both
    return. ``on_event`` / ``on_progress`` are cheap
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
