"""The shared request-rate governor: one per client, used by every create, poll and get.

It does three things, all cheap when unused:

* an optional client-side rate (``requests_per_second``) as a token bucket with a small burst;
* a whole-pipeline pause after a 429: every request waits until the ``Retry-After`` (or a
  backoff) has passed, instead of each request discovering the limit on its own;
* gradual recovery: after a 429 the governor paces requests at a learned rate (half the rate
  that was observed when the limit hit, or the configured rate if lower) and raises that rate
  additively on every success, so the pipeline does not burst straight back into the limit.

Waiters are served in FIFO order (an ``anyio.Lock`` is fair), so no request starves.
"""

from __future__ import annotations

import collections

import anyio

from . import _timing

__all__ = ["RateGovernor"]


class RateGovernor:
    """Paces requests: optional fixed rate, global pause on 429, then additive recovery."""

    #: Window (seconds) over which the request rate is measured, to learn a safe rate on 429.
    window = 2.0

    def __init__(
        self,
        requests_per_second: float | None = None,
        *,
        burst: int | None = None,
        recovery_step: float = 0.05,
    ) -> None:
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.configured_rate = requests_per_second
        self.burst = float(burst if burst is not None else max(1, int(requests_per_second or 1)))
        self.recovery_step = recovery_step
        self.learned_rate: float | None = None
        self._tokens = self.burst
        self._last_refill = _timing.monotonic()
        self._pause_until = 0.0
        self._lock = anyio.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self.rate_limited = 0
        self.paused_seconds = 0.0

    @property
    def rate(self) -> float | None:
        """The rate currently enforced (requests per second), or ``None`` for no limit."""
        rates = [r for r in (self.configured_rate, self.learned_rate) if r is not None]
        return min(rates) if rates else None

    async def acquire(self) -> None:
        """Wait until a request may be sent (pause over, a token available)."""
        if self.rate is None and self._pause_until == 0.0:
            self._note_start(_timing.monotonic())
            return
        async with self._lock:
            while True:
                now = _timing.monotonic()
                if now < self._pause_until:
                    await _timing.sleep(self._pause_until - now)
                    if _timing.waiting_disabled():
                        self._pause_until = 0.0
                    continue
                rate = self.rate
                if rate is None:
                    break
                self._refill(now, rate)
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    break
                await _timing.sleep((1.0 - self._tokens) / rate)
                if _timing.waiting_disabled():
                    self._tokens = 1.0
            self._note_start(_timing.monotonic())

    def on_rate_limited(self, delay: float) -> None:
        """A 429 came back: pause everything for ``delay`` seconds and slow down after."""
        self.rate_limited += 1
        now = _timing.monotonic()
        until = now + max(delay, 0.0)
        if until > self._pause_until:
            self.paused_seconds += until - max(self._pause_until, now)
            self._pause_until = until
        observed = self._observed_rate(now)
        current = self.rate
        base = observed if current is None else min(current, observed or current)
        self.learned_rate = max(base * 0.5, 0.5) if base else 1.0
        self._tokens = min(self._tokens, 1.0)
        # a fresh bucket after the pause must not burst straight back into the limit
        self.burst = max(1.0, min(self.burst, self.learned_rate))

    def on_success(self) -> None:
        """A request succeeded: raise a learned rate a little (additive increase)."""
        if self.learned_rate is not None:
            self.learned_rate += self.recovery_step
            observed = self._observed_rate(_timing.monotonic())
            # once we are well above what we actually use, the learned limit is moot
            if observed and self.learned_rate > 4 * observed + 10:
                self.learned_rate = None

    def _refill(self, now: float, rate: float) -> None:
        elapsed = max(now - self._last_refill, 0.0)
        self._last_refill = now
        self._tokens = min(self.burst, self._tokens + elapsed * rate)

    def _note_start(self, now: float) -> None:
        recent = self._recent
        recent.append(now)
        horizon = now - self.window
        while recent and recent[0] < horizon:
            recent.popleft()

    def _observed_rate(self, now: float) -> float:
        horizon = now - self.window
        recent = self._recent
        while recent and recent[0] < horizon:
            recent.popleft()
        return len(recent) / self.window
