"""The shared request-rate governor: one per client, used by every create, poll and get.

It does three things, all free when unused (no lock, no sleep, a deque append):

* an optional client-side rate (``requests_per_second``) as a token bucket;
* a whole-pipeline pause after a 429: every request waits until the ``Retry-After`` (or a
  backoff) has passed, instead of each request discovering the limit on its own;
* pacing and gradual recovery: the 429 also teaches a rate, ``0.9 x`` the rate of successful
  requests over the last ``window`` seconds (what the server let through), and requests are
  then released one at a time at that rate (bucket of one token), so the requests that were
  waiting do not all fire at once when the pause ends. While requests are actually held back by
  the learned rate, it grows by a factor ``1 + recovery`` per successful request
  (``slow_recovery`` once within 5% of the rate at which the last 429 came), probing back up to
  the server's limit. Counting in requests, not seconds, makes recovery independent of the time
  scale. The learned rate never drops below ``relative_floor`` (0.3) times the best success
  rate the server has sustained over at least a second (``ceiling``), so 429s that do not
  depend on the request rate (a flaky gateway, random throttling) cost a pause each but cannot
  ratchet a batch down to a crawl, while a real limit (whose sustained rate is the limit itself,
  or at most about twice it while a server's burst allowance lasts) is still paced below it. A
  429 before any success only pauses: nothing is known yet about the server's rate.

A 429 for a request that was *sent before* the governor reacted to an earlier 429 belongs to the
same burst: it extends the pause if needed but does not lower the rate again. ``bursts`` counts
reactions; ``rate_limited`` every 429; ``rate_limited_after_reaction`` the 429s of requests that
were released after a reaction (the requests pacing should have avoided).

Waiters are served in FIFO order (an ``anyio.Lock`` is fair), so no request starves. Time comes
from ``veo_async._timing`` (a testing switch removes all waiting).
"""

from __future__ import annotations

import collections
import math

import anyio

from . import _timing

__all__ = ["RateGovernor"]


class RateGovernor:
    """Paces requests: optional fixed rate, global pause on 429, learned rate, slow recovery."""

    def __init__(
        self,
        requests_per_second: float | None = None,
        *,
        burst: int | None = None,
        window: float = 4.0,
        recovery: float = 0.01,
        slow_recovery: float = 0.0005,
        floor: float = 0.2,
        relative_floor: float = 0.3,
    ) -> None:
        if requests_per_second is not None and not requests_per_second > 0:
            raise ValueError("requests_per_second must be positive")
        if window <= 0 or recovery < 0 or slow_recovery < 0 or floor <= 0:
            raise ValueError("window and floor must be positive, recoveries not negative")
        self.configured_rate = requests_per_second
        self._configured_burst = float(
            burst if burst is not None else max(1, math.ceil(requests_per_second or 1))
        )
        self.window = window
        self.recovery = recovery
        self.slow_recovery = slow_recovery
        self.floor = floor
        self.relative_floor = relative_floor
        #: Rate learned from 429s (requests per second), or ``None``.
        self.learned_rate: float | None = None
        #: The success rate measured at the first 429 (before any pacing).
        self.ceiling: float | None = None
        #: The rate in force when the last 429 came (recovery slows down near it).
        self.last_hit: float | None = None
        self._tokens = self._configured_burst
        self._last_refill = _timing.monotonic()
        self._pause_until = 0.0
        self._reacted_at = -math.inf
        self._last_growth = 0.0
        self._held = False
        self._lock = anyio.Lock()
        self._ok: collections.deque[float] = collections.deque()
        self._first_ok: float | None = None
        self._ok_since_reaction = 0
        self.rate_limited = 0
        self.rate_limited_after_reaction = 0
        self.bursts = 0
        self.paused_seconds = 0.0

    @property
    def rate(self) -> float | None:
        """The rate currently enforced (requests per second), or ``None`` for no limit."""
        configured, learned = self.configured_rate, self.learned_rate
        if configured is None:
            return learned
        if learned is None:
            return configured
        return min(configured, learned)

    @property
    def burst(self) -> float:
        """Token-bucket capacity: the configured burst, or one token once a rate was learned."""
        return 1.0 if self.learned_rate is not None else self._configured_burst

    async def acquire(self) -> float:
        """Wait until a request may be sent; returns the release time (``_timing.monotonic``).

        Pass that time back to :meth:`on_rate_limited` / :meth:`on_success` as ``sent_at``.
        """
        if self._pause_until == 0.0 and self.rate is None:
            return _timing.monotonic()
        async with self._lock:
            held = False
            while True:
                now = _timing.monotonic()
                if now < self._pause_until:
                    held = True
                    await _timing.sleep(self._pause_until - now)
                    if _timing.waiting_disabled():
                        self._pause_until = 0.0
                    continue
                rate = self.rate
                if rate is None:
                    break
                self._refill(now, rate)
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    break
                held = True
                await _timing.sleep((1.0 - self._tokens) / rate)
                if _timing.waiting_disabled():
                    self._tokens = 1.0
            self._held = held
            return _timing.monotonic()

    def on_rate_limited(self, delay: float, *, sent_at: float | None = None) -> None:
        """A 429 came back: pause everything for ``delay`` seconds; learn a rate once per burst."""
        self.rate_limited += 1
        now = _timing.monotonic()
        until = now + max(delay, 0.0)
        if until > self._pause_until:
            self.paused_seconds += until - max(self._pause_until, now)
            self._pause_until = until
        if sent_at is not None and sent_at < self._reacted_at:
            return  # same burst: already reacted
        if self.bursts:
            self.rate_limited_after_reaction += 1
        self.bursts += 1
        ok_rate = self._ok_rate(now)
        since = now - self._reacted_at
        if self._ok_since_reaction >= 5 and 0 < since < math.inf:
            # what the server let through while we were pacing: the best estimate of its limit
            ok_rate = self._ok_since_reaction / since
        self._ok_since_reaction = 0
        current = self.rate
        if ok_rate <= 0 and current is None:
            # Nothing has succeeded yet, so nothing is known about the server's rate: inventing
            # one (it used to be 1 request/s) made a single early 429 throttle a whole batch for
            # minutes. Pause only; the next 429 after some successes teaches a real rate.
            self._reacted_at = now
            return
        span = now - self._first_ok if self._first_ok is not None else 0.0
        if span >= 1.0:
            # the best success rate sustained over at least a second: what the server has shown
            # it lets through. Over a short span it includes a server's initial burst allowance
            # (at most about 2x its rate after one second), hence the low ``relative_floor``.
            self._trim(now)
            sustained = len(self._ok) / min(span, self.window)
            self.ceiling = max(
                self.ceiling or 0.0, sustained
            )  # what flowed unthrottled: the reference for the floor
        if ok_rate > 0:
            new = 0.9 * ok_rate
            if current is not None:
                new = min(new, 0.9 * current)
        else:
            new = 0.5 * current  # type: ignore[operator]
        self.last_hit = current if current is not None else ok_rate or None
        if self.ceiling:
            # isolated 429s (a flaky gateway) must not ratchet the rate down to nothing
            new = max(new, self.relative_floor * self.ceiling)
        self.learned_rate = max(self.floor, new)
        self._reacted_at = now
        self._tokens = min(self._tokens, 1.0)
        self._last_growth = now

    def on_success(self, *, sent_at: float | None = None) -> None:
        """A request succeeded: count it; grow a learned rate that is holding requests back."""
        now = _timing.monotonic()
        self._ok.append(now)
        self._ok_since_reaction += 1
        if self._first_ok is None:
            self._first_ok = now
        if len(self._ok) > 4096:
            self._trim(now)
        learned = self.learned_rate
        if learned is None:
            return
        self._last_growth = now
        if not self._held:
            return
        hit = self.last_hit
        step = self.slow_recovery if hit and learned >= 0.95 * hit else self.recovery
        self.learned_rate = learned * (1.0 + step)

    def _refill(self, now: float, rate: float) -> None:
        elapsed = max(now - self._last_refill, 0.0)
        self._last_refill = now
        self._tokens = min(self.burst, self._tokens + elapsed * rate)

    def _trim(self, now: float) -> None:
        horizon = now - self.window
        ok = self._ok
        while ok and ok[0] < horizon:
            ok.popleft()

    def _ok_rate(self, now: float) -> float:
        self._trim(now)
        if not self._ok or self._first_ok is None:
            return 0.0
        span = min(self.window, max(now - self._first_ok, 1e-3))
        return len(self._ok) / span
