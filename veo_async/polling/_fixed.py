"""Fixed-interval polling: the naive baseline, as a planner and as a (compatible) policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._adaptive import PollPolicy
from ._protocol import PollJob

if TYPE_CHECKING:
    from .._models import Generation

__all__ = ["FixedIntervalPlanner", "FixedIntervalPolicy"]


@dataclass(frozen=True)
class FixedIntervalPlanner:
    """A :class:`PollPlanner` that polls every ``interval`` seconds from submission.

    ``time_scale``: real seconds per service second (the emulator's, when time-compressed).
    It learns nothing and ignores the server's queue.
    """

    interval: float = 10.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.interval > 0 or not self.time_scale > 0:
            raise ValueError("interval and time_scale must be positive")

    def first_poll(self, job: PollJob, now: float) -> float:
        """``interval`` after ``now``."""
        return now + self.interval * self.time_scale

    def next_poll(self, job: PollJob, reply: Generation, now: float) -> float:
        """``interval`` after ``now``."""
        return now + self.interval * self.time_scale

    def after_failure(self, job: PollJob, now: float) -> float:
        """``interval`` after ``now`` (the client already retried the request)."""
        return now + self.interval * self.time_scale

    def finished(self, job: PollJob, reply: Generation | None, now: float) -> None:
        """Nothing to learn."""


@dataclass
class FixedIntervalPolicy(PollPolicy):
    """Poll every ``interval`` seconds from submission (the naive baseline), as a
    :class:`PollPolicy` for the places that take one (``poll_policy=``).

    New code that takes a :class:`PollPlanner` should use :class:`FixedIntervalPlanner`.
    """

    interval: float = 10.0
    learn: bool = False
    queue_aware: bool = False

    def first_delay(self, prior_seconds: float, *, rate_bound: bool = False) -> float:
        """Always ``interval`` (the baseline ignores ``rate_bound``)."""
        return self.interval * self.time_scale

    def next_delay(self, elapsed: float, prior_seconds: float, polls: int) -> float:
        """Always ``interval``."""
        return self.interval * self.time_scale

    def after_queued(self, prior_seconds: float) -> float:
        """Always ``interval``."""
        return self.interval * self.time_scale
