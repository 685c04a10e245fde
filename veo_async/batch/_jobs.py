"""The job table: every job of a batch, its state, and the counters kept with it.

A job's state changes only through :meth:`JobTable.transition`, which keeps every counter
that depends on it (jobs live, creates under way, creates made, the live
:class:`BatchCounts`, and the cost guard's books) in one place::

    NEW ──> SUBMITTING ──> TRACKING ──> FINISHED
     │          ├────────> REFUSED      (a proven refusal: 400, 403, ...)
     │          ├────────> UNCERTAIN    (may have started a billed generation)
     │          └────────> UNSENT       (cancelled before the request was sent)
     └──────────────────> TRACKING      (an id given to track: resumed)

``done`` and ``failed`` are counted where results are emitted, not here: they count results.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING

from ..polling._protocol import DEFAULT_PRIOR

if TYPE_CHECKING:
    from .._models import VideoRequest
    from ..instrumentation import Span
    from ._guard import CostGuard
    from ._results import BatchCounts

__all__ = ["Job", "JobState", "JobTable"]


class JobState(enum.Enum):
    """Where a job is (see the module docstring)."""

    NEW = "new"
    SUBMITTING = "submitting"
    TRACKING = "tracking"
    FINISHED = "finished"
    REFUSED = "refused"
    UNCERTAIN = "uncertain"
    UNSENT = "unsent"

    @property
    def live(self) -> bool:
        """Being created or tracked."""
        return self in _LIVE


_LIVE = frozenset({JobState.SUBMITTING, JobState.TRACKING})
_NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.NEW: frozenset({JobState.SUBMITTING, JobState.TRACKING}),
    JobState.SUBMITTING: frozenset(
        {JobState.TRACKING, JobState.REFUSED, JobState.UNCERTAIN, JobState.UNSENT}
    ),
    JobState.TRACKING: frozenset({JobState.FINISHED}),
}


class Job:
    """One input on its way: small and slotted, since 100,000 may be tracked at once.

    It is also what the poll planner knows of the job (a :class:`~veo_async.polling.PollJob`).
    """

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
        "span",
        "started",
        "state",
        "submitted",
        "submitted_wall",
    )

    def __init__(self, index: int, request: VideoRequest | None, key: Hashable | None) -> None:
        self.index = index
        self.request = request
        self.key = key
        self.state = JobState.NEW
        self.gid: str | None = None
        self.prior = request.expected_seconds() if request is not None else DEFAULT_PRIOR
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
        self.span: Span | None = None


class JobTable:
    """The jobs of one batch and the counters that follow their states."""

    __slots__ = ("active", "counts", "created", "creating", "gids", "guard", "jobs")

    def __init__(self, counts: BatchCounts, guard: CostGuard) -> None:
        self.counts = counts
        self.guard = guard
        self.jobs: dict[int, Job] = {}
        """Jobs with an id whose result was not consumed yet, by input index."""
        self.gids: dict[str, int] = {}
        """Every generation id this batch created or tracked, to its input index."""
        self.active = 0
        """Jobs being created or tracked."""
        self.creating = 0
        """Creates under way."""
        self.created = 0
        """Creates that returned an id."""

    @property
    def made(self) -> int:
        """Generations this batch may have made (created, being created, unknown outcome)."""
        return self.created + self.creating + self.counts.uncertain

    def transition(self, job: Job, to: JobState) -> None:
        """Move ``job`` to state ``to`` and keep every counter that depends on it."""
        was = job.state
        if to not in _NEXT.get(was, ()):
            raise RuntimeError(f"job {job.index}: no transition {was.name} -> {to.name}")
        job.state = to
        counts, guard = self.counts, self.guard
        if was is JobState.NEW:
            self.active += 1
        elif was is JobState.SUBMITTING:
            self.creating -= 1
            counts.submitting -= 1
        else:  # TRACKING -> FINISHED
            counts.running -= 1
        if not to.live:
            self.active -= 1
        if to is JobState.SUBMITTING:
            self.creating += 1
            counts.submitting += 1
            guard.in_flight += 1  # charged from before its create is sent
        elif to is JobState.TRACKING:
            self._tracking(job, created=was is JobState.SUBMITTING)
        elif to is JobState.REFUSED or to is JobState.UNSENT:
            guard.in_flight -= 1  # provably started nothing
        elif to is JobState.UNCERTAIN:
            counts.uncertain += 1
            guard.in_flight -= 1
            guard.settled_unknown += 1  # it may have been created and charged
        elif job.credits is None and not job.resumed:  # FINISHED
            # ended with no sane cost (no meta.usage, a failure, a timeout): it may have been
            # charged, so it stays charged at the estimate
            guard.in_flight -= 1
            guard.settled_unknown += 1

    def _tracking(self, job: Job, *, created: bool) -> None:
        assert job.gid is not None
        self.gids.setdefault(job.gid, job.index)
        self.jobs[job.index] = job
        self.counts.running += 1
        if created:
            self.created += 1
            self.counts.submitted += 1

    def consumed(self, index: int) -> None:
        """The result of input ``index`` was taken by the consumer: no longer pending."""
        self.jobs.pop(index, None)
