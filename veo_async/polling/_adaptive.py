"""The adaptive poll policy: learns a poll schedule from this run's completions. Pure."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from .._models import Generation, GenerationStatus
from ._protocol import PollJob
from ._schedule import Schedule, fit_schedule

__all__ = ["PollPolicy", "failure_backoff"]


@dataclass
class PollPolicy:
    """Adaptive poll timing (seconds of real time), learning from this run's completions.

    * ``delay_weight``: how many status requests one second of detection delay is worth; the
      fitted schedule minimises ``requests + delay_weight * delay`` (default 1.5: a second of
      delay is worth one and a half requests). Raise it for lower delay,
      lower it for fewer requests.
    * ``first_poll_fraction`` / ``interval``: the schedule used before enough completions are
      observed (first poll at this fraction of the expected duration, then every
      ``interval`` seconds).
    * ``min_interval`` / ``max_interval``: bounds of every step. ``backoff``: growth of the step
      past ``tail_quantile`` of the observed durations.
    * ``tail_gap``: the longest step while the job is still plausibly about to finish: the
      fitted step is at most this; past the tail the step grows only up to this until
      ``tail_window`` times the expected duration has passed beyond the tail (a job whose
      start was mispredicted is found late by at most about this much); only a real
      straggler is then looked at up to every ``max_interval``. A rate-bound first poll
      (``bound_quantile``) is at most this past a short plausible duration.
    * ``learn``: learn from observed completions. ``min_samples``: completions needed before
      the fitted schedule replaces the prior one. ``window``: completions remembered.
    * ``queue_aware``: use the batch's :class:`QueueModel` (see the module docstring);
      ``queued_grace``: seconds after submission beyond which ``queued`` means "waiting for a
      server slot" rather than the normal short queue before a start.
    * ``bound_quantile``: when the batch is *rate-bound* (the rate governor is holding
      requests back, so every status request delays every other request), the first poll is
      no earlier than this quantile of the observed durations (before any are observed: the
      expected duration itself), so most jobs cost a single status request; but no later
      than ``tail_gap`` past the 10th percentile of the durations, so a job that finishes
      early is not found the whole spread of durations late.
    * ``time_scale``: real seconds per service second. Every duration above (and the
      ``prior_seconds`` passed in) is in service seconds, every argument and result of the
      methods in real seconds; set it to the emulator's ``time_scale`` when testing against a
      time-compressed emulator.
    """

    delay_weight: float = 1.5
    first_poll_fraction: float = 0.9
    interval: float = 3.0
    min_interval: float = 0.5
    max_interval: float = 30.0
    backoff: float = 1.5
    tail_quantile: float = 0.95
    tail_gap: float = 5.0
    tail_window: float = 1.0
    learn: bool = True
    min_samples: int = 8
    window: int = 256
    queue_aware: bool = True
    queued_grace: float = 10.0
    bound_quantile: float = 0.9
    time_scale: float = 1.0
    _samples: deque[float] = field(default_factory=deque, init=False, repr=False)
    _priors: deque[float] = field(default_factory=deque, init=False, repr=False)
    _fitted: Schedule | None = field(default=None, init=False, repr=False)
    _fitted_at: int = field(default=0, init=False, repr=False)
    _seen: int = field(default=0, init=False, repr=False)
    _rng: random.Random = field(
        default_factory=lambda: random.Random(0x5EED), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.min_interval <= 0 or self.max_interval < self.min_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.interval <= 0 or self.first_poll_fraction <= 0:
            raise ValueError("interval and first_poll_fraction must be positive")
        if not self.time_scale > 0:
            raise ValueError("time_scale must be positive")
        if self.backoff < 1 or self.delay_weight < 0:
            raise ValueError("backoff must be >= 1 and delay_weight >= 0")
        if not 0 <= self.bound_quantile <= 1:
            raise ValueError("bound_quantile must be between 0 and 1")
        if not self.tail_gap >= self.min_interval or not self.tail_window >= 0:
            raise ValueError("need tail_gap >= min_interval and tail_window >= 0")

    # ------------------------------------------------------------------ learning

    @property
    def observations(self) -> int:
        """How many completions were observed (not capped by ``window``)."""
        return self._seen

    def observe(self, seconds_to_complete: float, prior_seconds: float = 45.0) -> None:
        """Record that a job finished ``seconds_to_complete`` after its start anchor.

        ``prior_seconds`` is the job's expected duration (samples are kept relative to it, so
        one run can mix models and clip lengths).
        """
        if not self.learn or not math.isfinite(seconds_to_complete) or seconds_to_complete <= 0:
            return
        if not math.isfinite(prior_seconds) or prior_seconds <= 0:
            return
        self._samples.append(seconds_to_complete / (prior_seconds * self.time_scale))
        self._priors.append(prior_seconds)
        self._seen += 1
        while len(self._samples) > self.window:
            self._samples.popleft()
            self._priors.popleft()

    def observe_at_most(
        self,
        seconds_to_complete: float,
        prior_seconds: float = 45.0,
        *,
        fallback_seconds: float | None = None,
    ) -> None:
        """Record that a job finished *no later than* ``seconds_to_complete`` after its anchor.

        That is all a poll says when it finds a job done and no earlier poll saw it running.
        Recording the bound itself (or a point just below it) would teach the policy that
        jobs take about as long as its own first poll: polled late (a rate-bound batch polls
        at ``bound_quantile``), it learns that jobs are slow and polls later still; in a
        long server queue every wave then starts later than predicted. Instead a duration
        already observed below the bound is drawn at random and recorded (so the observed
        spread below the bound is kept); when none is, ``fallback_seconds`` (default: the bound).
        """
        if not self.learn or not math.isfinite(seconds_to_complete) or seconds_to_complete <= 0:
            return
        if not math.isfinite(prior_seconds) or prior_seconds <= 0:
            return
        unit = prior_seconds * self.time_scale
        bound = seconds_to_complete / unit
        below = [x for x in self._samples if x <= bound]
        if below:
            value = self._rng.choice(below) * unit
        else:
            value = seconds_to_complete if fallback_seconds is None else fallback_seconds
        self.observe(value, prior_seconds)

    def schedule(self) -> Schedule:
        """The schedule in use, in units of the prior (fitted once enough is observed)."""
        n = len(self._samples)
        if not self.learn or n < self.min_samples:
            return Schedule(self.first_poll_fraction, 0.0, math.inf)
        if self._fitted is None or self._seen - self._fitted_at >= max(8, n // 4):
            self._fitted = self._fit()
            self._fitted_at = self._seen
        return self._fitted

    def _fit(self) -> Schedule:
        return fit_schedule(
            list(self._samples),
            list(self._priors),
            min_interval=self.min_interval,
            max_interval=self.max_interval,
            delay_weight=self.delay_weight,
            tail_quantile=self.tail_quantile,
            bound_quantile=self.bound_quantile,
            max_step=self.tail_gap,
        )

    def expected(self, prior_seconds: float) -> float:
        """The expected (median) duration in seconds: learned when possible, else the prior."""
        sched = self.schedule()
        prior = prior_seconds * self.time_scale
        return prior if sched.median is None else sched.median * prior

    def shortest(self, prior_seconds: float) -> float:
        """A short plausible duration in seconds: the 10th percentile learned, else
        ``first_poll_fraction`` of the prior."""
        sched = self.schedule()
        prior = prior_seconds * self.time_scale
        return prior * (self.first_poll_fraction if sched.early is None else sched.early)

    # ------------------------------------------------------------------ decisions

    def first_delay(self, prior_seconds: float, *, rate_bound: bool = False) -> float:
        """Seconds after the start anchor for the first poll.

        ``rate_bound``: requests are scarce (see ``bound_quantile``); poll later, once. Still
        no later than ``tail_gap`` past a short plausible duration (``shortest``): the jobs
        that finish early (a tenth of them finish before it) are found at most about
        ``tail_gap`` late, not the whole spread of durations late.
        """
        s = self.time_scale
        sched = self.schedule()
        units = sched.first
        if rate_bound:
            bound = sched.bound if sched.bound is not None else 1.0
            early = self.first_poll_fraction if sched.early is None else sched.early
            units = max(units, min(bound, early + self.tail_gap / prior_seconds))
        first = units * prior_seconds * s
        return min(max(self.min_interval * s, first), max(prior_seconds * 4, self.min_interval) * s)

    def step(self, prior_seconds: float) -> float:
        """The regular step between polls while completion is likely."""
        s = self.time_scale
        sched = self.schedule()
        step = self.interval if sched.step <= 0 else sched.step * prior_seconds
        return min(max(step, self.min_interval), self.max_interval) * s

    def next_delay(self, elapsed: float, prior_seconds: float, polls: int) -> float:
        """Seconds until the next poll of a job ``elapsed`` seconds past its start anchor.

        ``polls`` is how many polls the job had; it is not needed by this policy.
        """
        s = self.time_scale
        sched = self.schedule()
        first = self.first_delay(prior_seconds)
        if elapsed < first:
            return max(self.min_interval * s, first - elapsed)
        step = self.step(prior_seconds)
        tail_units = sched.tail if math.isfinite(sched.tail) else 1.3
        tail = tail_units * prior_seconds * s
        if elapsed <= tail:
            return step
        grown = max(step, step + (elapsed - tail) * (self.backoff - 1.0))
        if elapsed <= tail + self.tail_window * prior_seconds * s:
            # still plausible (a mispredicted start): bounded gaps between looks
            return min(grown, max(step, self.tail_gap * s))
        return min(self.max_interval * s, grown)

    def after_queued(self, prior_seconds: float) -> float:
        """Seconds until the next poll of a job just seen ``queued`` (no queue estimate).

        It may start right away, so it cannot finish before about the first-poll offset.
        """
        return self.first_delay(prior_seconds)

    # ------------------------------------------------------------------ PollPlanner

    def first_poll(self, job: PollJob, now: float) -> float:
        """:class:`PollPlanner`: the first poll, ``first_delay`` after ``now``; a resumed job
        (tracked by id, its age unknown) at once."""
        return now if job.resumed else now + self.first_delay(job.prior)

    def next_poll(self, job: PollJob, reply: Generation, now: float) -> float:
        """:class:`PollPlanner`: ``next_delay`` after ``now``, timed from ``job.anchor``.

        A resumed job is timed from what the replies say: ``queued``, it starts no earlier
        than now (``after_queued``); in progress at the first look, it is at least past the
        first-poll offset.
        """
        if job.resumed:
            if reply.status is GenerationStatus.QUEUED:
                job.anchor = now
                return now + self.after_queued(job.prior)
            if job.polls <= 1:
                job.anchor = now - self.first_delay(job.prior)
        return now + self.next_delay(now - job.anchor, job.prior, job.polls)

    def after_failure(self, job: PollJob, now: float) -> float:
        """:class:`PollPlanner`: back off ``2 ** failures`` service seconds (at most 60)."""
        return now + failure_backoff(job.failures, self.time_scale)

    def finished(self, job: PollJob, reply: Generation | None, now: float) -> None:
        """:class:`PollPlanner`: learn the duration of a job completed at ``now``.

        Only a completed job whose start is known teaches anything (a failed one says
        nothing about durations, a resumed one's age is unknown).
        """
        if reply is not None and reply.status is GenerationStatus.COMPLETED and not job.resumed:
            self.observe(now - job.anchor, job.prior)


def failure_backoff(failures: int, time_scale: float) -> float:
    """Seconds before polling again after ``failures`` failed status requests in a row."""
    return min(60.0, 2.0**failures) * time_scale
