"""The poll policy: when to look at a generation next. Pure: no clock, no network.

A generation takes a fairly predictable time (about 42 to 49 s for a 5 s Veo2 clip), so polling
at a fixed interval wastes requests early and adds delay late. Two small objects decide instead:

:class:`PollPolicy` (per client or per batch; learns across jobs)
    Times are measured from the job's *start anchor*: when it was submitted, or, when the
    server had it ``queued`` behind its concurrency limit, when it is estimated to have started.

    1. Before it knows anything, the first poll is at ``first_poll_fraction`` of the expected
       duration (``request.expected_seconds()``), then every ``interval`` seconds.
    2. From completions observed in this run (``observe``) it fits a *schedule*: the first
       poll at some quantile of the observed durations, then a fixed step. The fit minimises
       ``requests per job + delay_weight * mean detection delay (s)`` over the observed
       durations (a small grid search over at most ``window`` samples, redone as samples
       accumulate), so a tight distribution gets a late first poll and short steps, a wide
       one longer steps.
    3. Past the bulk of the observed durations (``tail_quantile``) the step grows
       geometrically (``backoff``) up to ``max_interval``: a straggler costs few requests.

:class:`QueueModel` (per batch)
    The server runs only so many generations per key at once; the rest stay ``queued``, so
    time from submission is not time from start. When a poll sees a job still ``queued``
    well after submission (``queued_grace``), the model marks the server *saturated* and
    estimates its concurrency ``C`` from the jobs seen started (FIFO: the highest started
    submission rank minus the jobs finished). A queued job of rank ``s`` then starts when the
    job of rank ``s - C`` finishes, so its anchor is that job's (observed or predicted)
    completion: no request is spent on jobs that cannot have started.

Configure it by passing ``PollPolicy(...)`` to the client or to a batch; use
:class:`FixedIntervalPolicy` for the naive baseline.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass, field

__all__ = ["FixedIntervalPolicy", "PollPolicy", "QueueModel"]

_QUANTILES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
_STEPS = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)


@dataclass(frozen=True)
class Schedule:
    """A fitted schedule in units of the prior: first poll, step, start of the tail."""

    first: float
    step: float
    tail: float
    median: float | None = None
    bound: float | None = None
    """The first poll while rate-bound (``PollPolicy.bound_quantile``)."""


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        raise ValueError("no samples")
    pos = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def schedule_cost(
    samples: list[float], first: float, step: float, scale: float, delay_weight: float
) -> tuple[float, float]:
    """Mean requests and mean detection delay (seconds) of a schedule over ``samples``.

    ``samples``, ``first`` and ``step`` are in units of the prior; ``scale`` converts them to
    seconds. Polls happen at ``first, first + step, first + 2 step, ...``.
    """
    if not samples:
        return 0.0, 0.0
    ordered = sorted(samples)
    polls, delay = _cost_sorted(ordered, _prefix_sums(ordered), first, step)
    n = len(ordered)
    return polls / n, delay * scale / n


def _prefix_sums(ordered: list[float]) -> list[float]:
    sums = [0.0]
    total = 0.0
    for x in ordered:
        total += x
        sums.append(total)
    return sums


def _cost_sorted(
    ordered: list[float], sums: list[float], first: float, step: float
) -> tuple[float, float]:
    """Total polls and total delay (units of the prior) over sorted samples.

    Samples are taken a group at a time: all those detected by the same poll ``first + k
    step`` cost ``1 + k`` polls each and ``first + k step - x`` of delay, so the work is one
    bisection per poll that detects something, not one step per sample (the fit tries about
    150 schedules every few dozen completions).
    """
    n = len(ordered)
    i = bisect.bisect_right(ordered, first)
    polls = float(n)
    delay = i * first - sums[i]
    while i < n:
        k = math.ceil((ordered[i] - first) / step - 1e-12)
        edge = first + k * step
        j = max(bisect.bisect_right(ordered, edge + 1e-12 * step, i), i + 1)
        count = j - i
        polls += k * count
        delay += count * edge - (sums[j] - sums[i])
        i = j
    return polls, delay


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
    * ``learn``: learn from observed completions. ``min_samples``: completions needed before
      the fitted schedule replaces the prior one. ``window``: completions remembered.
    * ``queue_aware``: use the batch's :class:`QueueModel` (see the module docstring);
      ``queued_grace``: seconds after submission beyond which ``queued`` means "waiting for a
      server slot" rather than the normal short queue before a start.
    * ``bound_quantile``: when the batch is *rate-bound* (the rate governor is holding
      requests back, so every status request delays every other request), the first poll is
      no earlier than this quantile of the observed durations (before any are observed: the
      expected duration itself), so nearly every job costs a single status request.
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
        at ``bound_quantile``), it learned that jobs are slow and polled later still; in a
        long server queue every wave then started later than predicted. Instead a duration
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
        ordered = sorted(self._samples)
        sums = _prefix_sums(ordered)
        n = len(ordered)
        scale = sorted(self._priors)[len(self._priors) // 2]
        best: tuple[float, float, float] | None = None
        for q in _QUANTILES:
            first = _quantile(ordered, q)
            for step_s in _STEPS:
                if step_s < self.min_interval or step_s > self.max_interval:
                    continue
                step = step_s / scale
                polls, delay = _cost_sorted(ordered, sums, first, step)
                cost = (polls + self.delay_weight * delay * scale) / n
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, first, step)
        assert best is not None
        _, first, step = best
        tail = _quantile(ordered, self.tail_quantile) + step
        bound = max(first, _quantile(ordered, self.bound_quantile))
        return Schedule(first, step, tail, _quantile(ordered, 0.5), bound)

    def expected(self, prior_seconds: float) -> float:
        """The expected (median) duration in seconds: learned when possible, else the prior."""
        sched = self.schedule()
        prior = prior_seconds * self.time_scale
        return prior if sched.median is None else sched.median * prior

    # ------------------------------------------------------------------ decisions

    def first_delay(self, prior_seconds: float, *, rate_bound: bool = False) -> float:
        """Seconds after the start anchor for the first poll.

        ``rate_bound``: requests are scarce (see ``bound_quantile``); poll later, once.
        """
        s = self.time_scale
        sched = self.schedule()
        units = sched.first
        if rate_bound:
            units = max(units, sched.bound if sched.bound is not None else 1.0)
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
        grown = step + (elapsed - tail) * (self.backoff - 1.0)
        return min(self.max_interval * s, max(step, grown))

    def after_queued(self, prior_seconds: float) -> float:
        """Seconds until the next poll of a job just seen ``queued`` (no queue estimate).

        It may start right away, so it cannot finish before about the first-poll offset.
        """
        return self.first_delay(prior_seconds)


@dataclass
class FixedIntervalPolicy(PollPolicy):
    """Poll every ``interval`` seconds from submission (the naive baseline)."""

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


class QueueModel:
    """FIFO model of the server's per-key concurrency limit (pure; see the module docstring).

    Ranks are submission order within one batch (0, 1, 2, ...). The caller reports what polls
    show (:meth:`saw_started`, :meth:`saw_queued`) and finished jobs (:meth:`finished`), and
    asks :meth:`predecessor` which job must finish before a given one can start.
    """

    __slots__ = ("_max_started", "_upper", "concurrency", "done", "grace", "saturated")

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self.saturated = False
        #: Estimated number of generations the server runs at once for this key (``None``
        #: until saturation was seen).
        self.concurrency: int | None = None
        self.done = 0
        self._max_started = -1
        self._upper: int | None = None

    def finished(self) -> None:
        """A job of this batch reached a final state (the server freed its slot)."""
        self.done += 1

    def saw_started(self, rank: int) -> None:
        """A poll showed the job of ``rank`` generating (or finished)."""
        self._max_started = max(self._max_started, rank)
        if self.saturated:
            self._update(rank)

    def saw_queued(self, rank: int, waited: float) -> None:
        """A poll showed the job of ``rank`` still queued ``waited`` seconds after submission.

        It waits because the jobs ahead of it that have not finished (about ``rank - done``)
        fill the server's slots: the concurrency is at most that.
        """
        if waited < self.grace:
            return
        bound = rank - self.done
        if bound >= 1 and (self._upper is None or bound < self._upper):
            self._upper = bound
        self.saturated = True
        self._update(self._max_started)

    def _update(self, rank: int) -> None:
        """Estimate the concurrency from both bounds.

        The highest rank seen started gives a lower bound, a job seen queued an upper one.
        When the upper bound is at least the lower one it is used: polls are then early
        rather than late (a late poll is never corrected, an early one sees ``queued``). A
        lower bound alone, taken when few jobs had been polled yet, made every later wave
        wait for a predecessor that had long finished.
        """
        lower = rank + 1 - self.done
        upper = self._upper
        if lower < 1 and upper is None:
            return  # nothing seen started (another client may hold every slot)
        lower = max(1, lower)
        estimate = upper if upper is not None and upper >= lower else lower
        if self.concurrency is None or estimate > self.concurrency or upper == estimate:
            self.concurrency = estimate

    def predecessor(self, rank: int) -> int | None:
        """The rank whose completion frees the slot for ``rank``; ``None`` if not limited."""
        if not self.saturated or self.concurrency is None:
            return None
        before = rank - self.concurrency
        return before if before >= 0 else None
