"""The poll policy: when to look at a generation next. Pure: no clock, no network.

A generation takes a fairly predictable time (about 40 to 50 s for a 5 s Veo2 clip), so polling
at a fixed interval wastes requests early and adds delay late. The policy instead

1. makes the first poll near the moment the job is likely done (a low quantile of the
   expected duration for its model and clip length),
2. then polls at short intervals while completion is likely, and backs off geometrically when
   the job runs long,
3. learns from completion times observed in this run (``observe``), so the first-poll guess
   tracks the real service rather than the prior.

Configure it by passing ``PollPolicy(...)`` to the client or to a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["FixedIntervalPolicy", "PollPolicy"]


@dataclass
class PollPolicy:
    """Adaptive poll timing (seconds of real time).

    ``first_poll_fraction``: the first poll happens at this fraction of the expected duration.
    ``interval``: the interval while completion is expected; ``max_interval`` caps the
    geometric back-off (``backoff``) once the job runs beyond its expected time.
    ``min_interval`` is the floor. ``learn`` turns learning from observed completions on.
    """

    first_poll_fraction: float = 0.9
    interval: float = 3.0
    min_interval: float = 0.5
    max_interval: float = 15.0
    backoff: float = 1.5
    learn: bool = True
    _observed: list[float] = field(default_factory=list, repr=False)

    def observe(self, seconds_to_complete: float) -> None:
        """Record that a job completed ``seconds_to_complete`` after it was submitted."""
        if self.learn and math.isfinite(seconds_to_complete) and seconds_to_complete > 0:
            self._observed.append(seconds_to_complete)
            if len(self._observed) > 512:
                del self._observed[: len(self._observed) - 512]

    def expected(self, prior_seconds: float) -> float:
        """The expected duration: the prior, blended with observed completions."""
        if not self._observed:
            return prior_seconds
        ordered = sorted(self._observed)
        low = ordered[max(0, int(len(ordered) * 0.1) - 1)]
        weight = min(len(ordered), 20) / 20
        return weight * low / self.first_poll_fraction + (1 - weight) * prior_seconds

    def first_delay(self, prior_seconds: float) -> float:
        """Seconds after submission for the first poll."""
        return max(self.min_interval, self.expected(prior_seconds) * self.first_poll_fraction)

    def next_delay(self, elapsed: float, prior_seconds: float, polls: int) -> float:
        """Seconds until the next poll of a job submitted ``elapsed`` seconds ago."""
        expected = self.expected(prior_seconds)
        if elapsed < expected * self.first_poll_fraction:
            return max(self.min_interval, expected * self.first_poll_fraction - elapsed)
        overrun = max(0.0, elapsed - expected * 1.25)
        if overrun <= 0:
            return max(self.min_interval, self.interval)
        grown: float = self.interval * self.backoff ** min(overrun / max(self.interval, 1e-9), 32)
        return max(self.min_interval, min(self.max_interval, grown))


@dataclass
class FixedIntervalPolicy(PollPolicy):
    """Poll every ``interval`` seconds from submission (the naive baseline)."""

    interval: float = 10.0
    learn: bool = False

    def first_delay(self, prior_seconds: float) -> float:
        """Always ``interval``."""
        return self.interval

    def next_delay(self, elapsed: float, prior_seconds: float, polls: int) -> float:
        """Always ``interval``."""
        return self.interval
