"""The seam: :class:`PollPlanner` decides when to look at a job next; :class:`PollJob` is
what it knows about the job.

Four decisions, in the shape of aiometer's three-method ``MeterState``: the first poll of a
job, the next poll after a reply, the next poll after a failed status request, and what a
finished job teaches about the others. Every method gets the current time from the caller
(``now``, on the caller's monotonic clock, real seconds) and returns a monotonic time, so a
planner never reads a clock and is tested without one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._models import Generation

__all__ = ["JobTiming", "PollJob", "PollPlanner"]

DEFAULT_PRIOR = 45.0
"""Expected duration (service seconds) of a job whose request is not known."""


class PollJob(Protocol):
    """What a planner knows about one job (times on the caller's monotonic clock).

    An attribute protocol: :class:`JobTiming` implements it, and so does the batch engine's
    own job record.
    """

    prior: float
    submitted: float
    anchor: float
    last_poll: float
    due: float
    planned: float
    polls: int
    failures: int
    rank: int
    started: bool
    queued_seen: bool
    running_seen: bool
    resumed: bool


class JobTiming:
    """What a planner knows about one job (times on the caller's monotonic clock).

    The caller sets ``prior`` and ``submitted`` / ``anchor`` when the job starts being
    tracked, and counts ``polls`` and ``failures`` (consecutive failed status requests); a
    planner may move ``anchor`` (when the job is estimated to have started) and keeps the
    sightings (``last_poll``, ``started``, ``queued_seen``, ``running_seen``). The batch
    engine's own job record has the same attributes.
    """

    __slots__ = (
        "anchor",
        "due",
        "failures",
        "last_poll",
        "planned",
        "polls",
        "prior",
        "queued_seen",
        "rank",
        "resumed",
        "running_seen",
        "started",
        "submitted",
    )

    def __init__(self, now: float, prior: float = DEFAULT_PRIOR, *, resumed: bool = False) -> None:
        self.prior = prior
        """Expected duration in service seconds (``VideoRequest.expected_seconds()``)."""
        self.submitted = now
        """When the job was submitted (or, resumed, first tracked)."""
        self.anchor = now
        """When the job is estimated to have started on the server."""
        self.last_poll = now
        """When it was last looked at."""
        self.due = 0.0
        """When the poll being answered was planned for."""
        self.planned = math.inf
        """When its next poll is planned (kept by the caller's scheduler)."""
        self.polls = 0
        self.failures = 0
        self.rank = -1
        """Submission order within a batch (``-1``: not ranked)."""
        self.started = resumed
        """Seen generating (or assumed to be, when resumed)."""
        self.queued_seen = False
        self.running_seen = False
        self.resumed = resumed
        """Tracked by id rather than submitted here: its start is unknown."""


class PollPlanner(Protocol):
    """When to poll a job: four pure decisions (see the module docstring).

    A planner for one job at a time (``client.wait()``) or for a whole batch; an
    implementation may keep state across jobs (what it learned).
    """

    def first_poll(self, job: PollJob, now: float) -> float:
        """When to poll ``job`` first; it was submitted (or started being tracked) at ``now``."""
        ...

    def next_poll(self, job: PollJob, reply: Generation, now: float) -> float:
        """When to poll ``job`` again after a poll at ``now`` answered ``reply`` (not final).

        ``job.polls`` already counts that poll.
        """
        ...

    def after_failure(self, job: PollJob, now: float) -> float:
        """When to poll ``job`` again after a failed status request (``job.failures`` of them
        in a row, each already retried by the client)."""
        ...

    def finished(self, job: PollJob, reply: Generation | None, now: float) -> None:
        """``job`` reached a final state at ``now`` (``reply``: the last status seen, if any);
        learn what it teaches about the others."""
        ...
