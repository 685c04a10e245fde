"""A token bucket and the pause on 429: pure state, every time passed in by the caller."""

from __future__ import annotations

import math

__all__ = ["RateLimitPause", "TokenBucket"]


class TokenBucket:
    """``tokens`` refill at a rate up to a capacity; a request takes one."""

    __slots__ = ("last_refill", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last_refill = now

    def refill(self, now: float, rate: float, capacity: float) -> None:
        """Add what ``rate`` accrued since the last refill, up to ``capacity``."""
        elapsed = max(now - self.last_refill, 0.0)
        self.last_refill = now
        self.tokens = min(capacity, self.tokens + elapsed * rate)

    def take(self) -> bool:
        """Take a token if there is one (within rounding)."""
        if self.tokens >= 1.0 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def wait(self, rate: float) -> float:
        """Seconds until a whole token has accrued at ``rate``."""
        return (1.0 - self.tokens) / rate

    def frozen_until(self, until: float) -> None:
        """No tokens accrue before ``until`` (a pause: the server's own bucket did not refill
        beyond what its Retry-After asked for, so a burst would be refused)."""
        self.last_refill = max(self.last_refill, until)

    def clamp(self, most: float = 1.0) -> None:
        """Drop saved-up tokens beyond ``most`` (a new pace must not start with a burst)."""
        self.tokens = min(self.tokens, most)


class RateLimitPause:
    """The whole-pipeline pause after a 429, and which 429s are new decisions.

    A 429 for a request sent before the reaction to an earlier one belongs to the same burst:
    it may extend the pause but is not a new decision.
    """

    __slots__ = (
        "bursts",
        "paused_seconds",
        "rate_limited",
        "rate_limited_after_reaction",
        "reacted_at",
        "until",
    )

    def __init__(self) -> None:
        self.until = 0.0
        """Monotonic time until which every request waits (0: never paused)."""
        self.reacted_at = -math.inf
        self.rate_limited = 0
        self.rate_limited_after_reaction = 0
        self.bursts = 0
        self.paused_seconds = 0.0

    def refused(self, now: float, delay: float, *, everyone: bool = True) -> None:
        """A 429 came back at ``now``: pause everything for ``delay`` seconds from now
        (``everyone=False``: only the refused request waits; it is only counted here)."""
        self.rate_limited += 1
        if not everyone:
            return
        until = now + max(delay, 0.0)
        if until > self.until:
            self.paused_seconds += until - max(self.until, now)
            self.until = until

    def new_burst(self, now: float, sent_at: float | None) -> bool:
        """Whether a 429 for a request released at ``sent_at`` calls for a new decision."""
        if sent_at is not None and sent_at < self.reacted_at:
            return False
        if self.bursts:
            self.rate_limited_after_reaction += 1
        self.bursts += 1
        self.reacted_at = now
        return True
