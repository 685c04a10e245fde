"""The rate governor: one per client, composing the token bucket, the pause and the learner.

The only part here that touches a clock or waits is :meth:`RateGovernor.acquire`; every
decision is made by the pure parts it composes.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any

import anyio

from .. import _timing
from .._exceptions import ConfigurationError
from ._bucket import RateLimitPause, TokenBucket
from ._learner import PaceLearner
from ._tuning import GovernorTuning, PaceState

if TYPE_CHECKING:
    from ..stores import SharedBudget

__all__ = ["RateGovernor"]

logger = logging.getLogger("veo_async.ratelimit")

#: Service seconds between two reads of the pace other processes published (scaled by
#: ``time_scale``): a shared pace is read this rarely, never on every request.
SHARED_PACE_READ_SECONDS = 2.0
#: Service seconds a published pace lives in Redis unless it is published again.
SHARED_PACE_TTL_SECONDS = 60.0
#: Seconds (service time) within which a process that drew on a shared budget counts as one of
#: the processes sharing the key's limit.
SHARED_PACE_MEMBER_WINDOW = 5.0
#: Seconds the shared budget is left alone after a failed call (Redis down): requests are
#: paced locally meanwhile instead of each one waiting out the client's reconnect backoff.
SHARED_RETRY_SECONDS = 5.0

_OWN_WAIT: contextvars.ContextVar[float] = contextvars.ContextVar("veo_async_own_wait", default=0.0)
"""Until when the current task's next request waits: a scattered 429 makes only the refused
request wait (its retry runs in the same task), not every request of the client."""


class RateGovernor:
    """Paces requests: optional fixed rate, global pause on 429, learned pace, rare probes.

    ``requests_per_second`` / ``burst``: an optional client-side token bucket.
    ``time_scale``: real seconds per service second (every duration of the tuning shrinks
    with it). ``tuning``: the thresholds (:class:`GovernorTuning`); the keyword arguments
    ``headroom`` ... ``relative_floor`` override single fields of it, as before there was a
    tuning object.

    ``shared_budget``: a :class:`~veo_async.stores.SharedBudget` (a request schedule in Redis
    shared by every process on one API key). Each request then also reserves its slot there,
    after this governor's own pacing, and sleeps until it (one reservation per process in
    flight: the others queue behind this governor's lock); the pace this governor learns is
    published to it when it settles or is lowered (and refreshed while it holds), and a lower
    pace published by another process is adopted (read at most every
    ``SHARED_PACE_READ_SECONDS``). asyncio only: on trio the first request raises
    :class:`~veo_async.ConfigurationError`. If Redis cannot be reached the request goes on
    with local pacing only (logged as a warning), and the budget is tried again
    ``SHARED_RETRY_SECONDS`` later.
    """

    def __init__(
        self,
        requests_per_second: float | None = None,
        *,
        burst: int | None = None,
        time_scale: float = 1.0,
        tuning: GovernorTuning | None = None,
        headroom: float | None = None,
        noise_tolerance: float | None = None,
        min_evidence: int | None = None,
        verify_seconds: float | None = None,
        probe_seconds: float | None = None,
        probe_step: float | None = None,
        count_seconds: float | None = None,
        floor: float | None = None,
        relative_floor: float | None = None,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        if requests_per_second is not None and not requests_per_second > 0:
            raise ValueError("requests_per_second must be positive")
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        overrides: dict[str, Any] = {
            "headroom": headroom,
            "noise_tolerance": noise_tolerance,
            "min_evidence": min_evidence,
            "verify_seconds": verify_seconds,
            "probe_seconds": probe_seconds,
            "probe_step": probe_step,
            "count_seconds": count_seconds,
            "floor": floor,
            "relative_floor": relative_floor,
        }
        given = {name: value for name, value in overrides.items() if value is not None}
        self.tuning = dataclasses.replace(tuning or GovernorTuning(), **given)
        """The thresholds in use."""
        self.configured_rate = requests_per_second
        self.time_scale = time_scale
        self._configured_burst = float(
            burst if burst is not None else max(1, math.ceil(requests_per_second or 1))
        )
        self._bucket = TokenBucket(self._configured_burst, _timing.monotonic())
        self._pause = RateLimitPause()
        self._learner = PaceLearner(
            self.tuning, configured_rate=requests_per_second, time_scale=time_scale
        )
        self._held_at = -math.inf
        self._own_waits = 0
        self._own_wait_seconds = 0.0
        self._lock = anyio.Lock()
        self.shared_budget = shared_budget
        """The budget shared with other processes through Redis, or ``None``."""
        self._shared_checked = False
        self._publish: float | None = None  # an own pace waiting to be published
        self._adopted: float | None = None  # the pace last taken from another process
        self._next_pace_read = -math.inf
        self._shared_failures = 0
        self._shared_down_until = -math.inf

    # ------------------------------------------------------------------ state

    @property
    def rate(self) -> float | None:
        """The rate currently enforced (requests per second), or ``None`` for no limit."""
        return self._learner.rate

    @property
    def learned_rate(self) -> float | None:
        """Pace learned from 429s (requests per second), or ``None``."""
        return self._learner.learned_rate

    @property
    def ceiling(self) -> float | None:
        """The best rate the server was measured to let through (the relative floor's base)."""
        return self._learner.ceiling

    @property
    def state(self) -> PaceState:
        """Where the learned pace stands (a :class:`PaceState`, equal to its string value)."""
        return self._learner.state

    @property
    def noise(self) -> float:
        """The refused share found not to depend on the rate (0 until such 429s are seen)."""
        return self._learner.noise

    @property
    def lowered(self) -> int:
        """How often the pace was lowered."""
        return self._learner.lowered

    @property
    def probes(self) -> int:
        """How often the pace was probed upwards."""
        return self._learner.probes

    @property
    def probes_failed(self) -> int:
        """Probes that drew a 429."""
        return self._learner.probes_failed

    @property
    def rate_limited(self) -> int:
        """Every 429 seen."""
        return self._pause.rate_limited

    @property
    def rate_limited_after_reaction(self) -> int:
        """429s of requests released after the first reaction (those pacing could avoid)."""
        return self._pause.rate_limited_after_reaction

    @property
    def bursts(self) -> int:
        """429s that were new decisions (not part of a burst already reacted to)."""
        return self._pause.bursts

    @property
    def paused_seconds(self) -> float:
        """Total seconds the whole pipeline was paused by 429s that showed a limit."""
        return self._pause.paused_seconds

    @property
    def own_waits(self) -> int:
        """Scattered 429s after which only the refused request waited (no pipeline pause)."""
        return self._own_waits

    @property
    def own_wait_seconds(self) -> float:
        """Total seconds refused requests were told to wait on their own (scattered 429s)."""
        return self._own_wait_seconds

    @property
    def holding(self) -> bool:
        """Whether requests were held back by the pace or a pause in the last two seconds."""
        return self._holding(_timing.monotonic())

    def _holding(self, now: float) -> bool:
        return now - self._held_at <= self.tuning.holding_seconds * self.time_scale

    @property
    def burst(self) -> float:
        """Token-bucket capacity: the configured burst, or a small one once a rate was learned.

        A learned pace allows ``1 + rate x catch_up_seconds`` tokens: enough to make up for the
        event loop waking a release a few milliseconds late (a one-token bucket loses that
        time for good), too few to burst.
        """
        learned = self.learned_rate
        if learned is None:
            return self._configured_burst
        return 1.0 + learned * self.tuning.catch_up_seconds

    # ------------------------------------------------------------------ release

    async def acquire(self) -> float:
        """Wait until a request may be sent; returns the release time (``_timing.monotonic``).

        Pass that time back to :meth:`on_rate_limited` / :meth:`on_success` as ``sent_at``.
        Waiters are served in FIFO order (an ``anyio.Lock`` is fair), so none starves.
        """
        own = _OWN_WAIT.get()
        if own:
            _OWN_WAIT.set(0.0)
            wait = own - _timing.monotonic()
            if wait > 0 and not _timing.waiting_disabled():
                await _timing.sleep(wait)
        shared = self.shared_budget
        if shared is not None and _timing.monotonic() < self._shared_down_until:
            shared = None  # Redis failed a moment ago: local pacing only for a while
        if shared is None and self._pause.until == 0.0 and self.rate is None:
            return _timing.monotonic()
        async with self._lock:
            if shared is not None:
                await self._read_shared_pace(shared)
            held = await self._wait_turn()
            if shared is not None:
                await self._take_shared(shared)
            now = _timing.monotonic()
            if held:
                self._held_at = now
            if self._learner.released(now, held):
                self._bucket.clamp()
                self._note_pace()
            return now

    # ------------------------------------------------------------------ shared budget

    @property
    def shared_failures(self) -> int:
        """Calls to the shared budget that failed (Redis unreachable): local pacing only."""
        return self._shared_failures

    def _check_shared(self) -> None:
        if self._shared_checked:
            return
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "shared_budget (a Redis request schedule, redis.asyncio) works on asyncio only, "
                "not on trio: drop shared_budget or run the client on asyncio"
            ) from None
        self._shared_checked = True

    def _shared_failed(self, what: str, exc: Exception) -> None:
        self._shared_failures += 1
        self._shared_down_until = _timing.monotonic() + SHARED_RETRY_SECONDS
        if self._shared_failures == 1 or self._shared_failures % 100 == 0:
            logger.warning(
                "shared budget: %s failed (%s: %s); pacing locally only (%d failures)",
                what,
                type(exc).__name__,
                exc,
                self._shared_failures,
            )

    async def _read_shared_pace(self, shared: SharedBudget) -> None:
        """Every few seconds: adopt a lower pace another process published, or refresh ours."""
        self._check_shared()
        now = _timing.monotonic()
        if now < self._next_pace_read and self._publish is None:
            return
        own = self._own_pace()
        try:
            if now >= self._next_pace_read:
                self._next_pace_read = now + SHARED_PACE_READ_SECONDS * self.time_scale
                pace = await shared.shared_pace()
                if pace is not None and self._learner.adopt(pace, _timing.monotonic()):
                    self._adopted = self._learner.learned_rate
                    self._publish = None
                    self._bucket.clamp()
                    return
                if own is not None and (pace is None or pace > own):
                    self._publish = own  # keep ours alive (or lower a higher one)
            if self._publish is not None:
                rate, self._publish = self._publish, None
                ttl = max(1.0, SHARED_PACE_TTL_SECONDS * self.time_scale)
                # Our pace is our share of the key's limit: the key's pace is that share times
                # the processes drawing on the budget now (else N processes would all drop to
                # one share, 1/N of the limit).
                window = max(1.0, SHARED_PACE_MEMBER_WINDOW * self.time_scale)
                members = await shared.members(window)
                await shared.publish_pace(rate * members, ttl=ttl)
        except ConfigurationError:
            raise
        except Exception as exc:
            self._shared_failed("reading or publishing the pace", exc)

    async def _take_shared(self, shared: SharedBudget) -> None:
        if _timing.monotonic() < self._shared_down_until:
            return  # reading the pace just failed
        try:
            await shared.acquire()
        except Exception as exc:
            self._shared_failed("reserving a slot", exc)

    def _own_pace(self) -> float | None:
        """The pace this process learned and verified itself (not probing, not adopted)."""
        learner = self._learner
        rate = learner.learned_rate
        if rate is None or rate == self._adopted:
            return None
        if learner.state in (PaceState.SETTLED, PaceState.VERIFYING):
            return rate
        return None

    def _note_pace(self) -> None:
        """The learner set a new pace: publish it at the next request if it is our own."""
        if self.shared_budget is not None:
            if self._learner.learned_rate != self._adopted:
                self._adopted = None  # a pace of our own now
            own = self._own_pace()
            if own is not None:
                self._publish = own

    async def _wait_turn(self) -> bool:
        """Sleep out the pause, then for a token; whether the request had to wait."""
        pause, bucket = self._pause, self._bucket
        held = False
        while True:
            now = _timing.monotonic()
            if now < pause.until:
                held = True
                await _timing.sleep(pause.until - now)
                if _timing.waiting_disabled():
                    pause.until = 0.0
                bucket.frozen_until(pause.until)
                continue
            rate = self.rate
            if rate is None:
                return held
            bucket.refill(now, rate, self.burst)
            if bucket.take():
                return held
            held = True
            await _timing.sleep(bucket.wait(rate))
            if _timing.waiting_disabled():
                bucket.tokens = 1.0

    # ------------------------------------------------------------------ feedback

    def on_rate_limited(self, delay: float, *, sent_at: float | None = None) -> None:
        """A 429 came back: the refused request waits ``delay`` seconds; decide once per burst.

        Only a 429 that shows a limit pauses *every* request for ``delay``: one that set or
        lowered the pace, one while a new pace is verified or probed, one while a learned
        pace holds requests back (the pace is too fast), or one of a share of 429s clearly
        above the noise. A scattered 429 (a flaky gateway, random throttling at
        a pace that holds) makes only the refused request wait (the caller retries it in the
        same task, whose next :meth:`acquire` waits): it never freezes the pipeline.
        """
        now = _timing.monotonic()
        learner = self._learner
        learner.counted_refusal(now, sent_at)
        paced = False
        if self._pause.new_burst(now, sent_at):
            paced = learner.refused(now, holding=self._holding(now))
        everyone = (
            paced
            or learner.limit_shown()
            or (learner.learned_rate is not None and self._holding(now))
        )
        self._pause.refused(now, delay, everyone=everyone)
        if not everyone:
            self._own_waits += 1
            self._own_wait_seconds += max(delay, 0.0)
            _OWN_WAIT.set(max(_OWN_WAIT.get(), now + max(delay, 0.0)))
        if paced:
            self._bucket.clamp()
            self._note_pace()

    def on_success(self, *, sent_at: float | None = None) -> None:
        """The server let a request through (any answer but a 429): count it."""
        if self._learner.admitted(_timing.monotonic(), sent_at):
            self._bucket.clamp()
            self._note_pace()
