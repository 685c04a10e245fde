"""Retry decisions and backoff: pure functions, no clock, no network.

Which failures are retried, and why:

=================================  =========  ==============================================
failure                            poll/get   create
=================================  =========  ==============================================
connection not established         retry      retry: nothing reached the server
(connect error/timeout, pool
timeout)
429 rate limited                   retry      retry: the server refused the request
``create_safe_statuses`` (503)     retry      retry: the server said it did not take the work
other 5xx (500, 502, 504)          retry      **outcome unknown**: the job may exist
read/write timeout, connection     retry      **outcome unknown**: the request was sent
lost after sending
2xx with a broken body, a reply   retry      **outcome unknown**: the job probably exists
that fails to decode or parse,
a malformed reply, a body over
``max_response_bytes``, no id
``request_deadline`` expired       retry      **outcome unknown**: the request may be sent
400, 401, 403, 404                 raise      raise
=================================  =========  ==============================================

"Outcome unknown" raises :class:`~veo_async.CreateOutcomeUnknownError` instead of retrying,
because retrying could start (and bill) a second generation and the API has no idempotency key.

Backoff is exponential with "equal jitter" (half fixed, half random) and a cap. A server's
``Retry-After`` is honoured when it is longer than the computed backoff, which is its floor
(``0``, a negative value or a date in the past is not "retry now"); a ``Retry-After`` longer
than ``max_retry_after`` is not waited out at all: the client raises
:class:`~veo_async.RateLimitError` at once, with ``retry_after`` set. When every attempt fails,
the last error is let through unchanged.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    InvalidResponseError,
    RateLimitError,
    VeoError,
)

__all__ = ["RetryConfig", "RetryDecision", "backoff_delay", "decide", "parse_retry_after"]


@dataclass(frozen=True)
class RetryConfig:
    """How requests are retried. The defaults suit the service's rate limits.

    ``max_attempts`` counts the first try (1 disables retries). ``initial_backoff`` doubles
    (``multiplier``) each attempt up to ``max_backoff`` seconds. ``max_retry_after`` caps how
    long a server's ``Retry-After`` is waited out: a longer one raises
    :class:`~veo_async.RateLimitError` at once (a quota, not a pause). ``create_safe_statuses``
    are the 5xx statuses after which a create is retried because the server signals it did not
    take the work.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    max_retry_after: float = 300.0
    create_safe_statuses: frozenset[int] = field(default_factory=lambda: frozenset({503}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff values must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")


class RetryDecision(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    RAISE = "raise"
    OUTCOME_UNKNOWN = "outcome_unknown"


def decide(error: VeoError, *, is_create: bool, config: RetryConfig) -> RetryDecision:
    """Decide whether ``error`` is retried, raised, or (for a create) of unknown outcome."""
    if isinstance(error, RateLimitError):
        return RetryDecision.RETRY
    if isinstance(error, APIStatusError):
        if error.status_code >= 500:
            if not is_create or error.status_code in config.create_safe_statuses:
                return RetryDecision.RETRY
            return RetryDecision.OUTCOME_UNKNOWN
        return RetryDecision.RAISE
    if isinstance(error, APIConnectionError):
        if not is_create or not error.request_sent:
            return RetryDecision.RETRY
        return RetryDecision.OUTCOME_UNKNOWN
    if isinstance(error, InvalidResponseError):
        return RetryDecision.OUTCOME_UNKNOWN if is_create else RetryDecision.RETRY
    return RetryDecision.RAISE


def backoff_delay(
    attempt: int,
    config: RetryConfig,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = first retry).

    Exponential backoff with equal jitter, capped by ``config.max_backoff``. A server's
    ``retry_after`` (capped by ``config.max_retry_after``) wins when it is longer: the computed
    backoff is its floor, so ``Retry-After: 0`` never means "retry at once".
    """
    if retry_after is not None:
        floor = backoff_delay(attempt, config, rng=rng)
        return max(floor, min(retry_after, config.max_retry_after))
    # Overflow guard: beyond this exponent the cap applies anyway.
    exponent = min(max(attempt - 1, 0), 64)
    try:
        raw = config.initial_backoff * (config.multiplier**exponent)
    except OverflowError:
        raw = math.inf
    capped = min(raw, config.max_backoff)
    r = (rng or random).random()
    return capped / 2 + r * capped / 2


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay seconds (fractions accepted) or an HTTP date.

    Returns ``None`` when absent or unparseable; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max((when - current).total_seconds(), 0.0)
