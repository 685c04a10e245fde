"""Retry decisions and backoff are pure and exhaustive."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from veo_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryConfig,
    ServerError,
    VeoError,
)
from veo_async._retry import RetryDecision, backoff_delay, decide, parse_retry_after

CFG = RetryConfig()
R, X, U = RetryDecision.RETRY, RetryDecision.RAISE, RetryDecision.OUTCOME_UNKNOWN


def _status(cls: type[VeoError], code: int) -> VeoError:
    return cls("m", status_code=code)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("error", "poll", "create"),
    [
        (RateLimitError("m", status_code=429), R, R),
        (_status(ServerError, 500), R, U),
        (_status(ServerError, 502), R, U),
        (_status(ServerError, 503), R, R),
        (_status(ServerError, 504), R, U),
        (_status(BadRequestError, 400), X, X),
        (_status(AuthenticationError, 401), X, X),
        (_status(PermissionDeniedError, 403), X, X),
        (_status(NotFoundError, 404), X, X),
        (APIConnectionError("m", request_sent=False), R, R),
        (APIConnectionError("m", request_sent=True), R, U),
        (APITimeoutError("m", request_sent=False), R, R),
        (APITimeoutError("m", request_sent=True), R, U),
        (InvalidResponseError("m"), R, U),
        (VeoError("m"), X, X),
    ],
)
def test_decision_table(error: VeoError, poll: RetryDecision, create: RetryDecision) -> None:
    """Each failure is retried, raised, or (for a create) reported as outcome unknown."""
    assert decide(error, is_create=False, config=CFG) is poll
    assert decide(error, is_create=True, config=CFG) is create


def test_create_safe_statuses_configurable() -> None:
    """Removing 503 from create_safe_statuses makes a 503 create outcome-unknown."""
    cfg = RetryConfig(create_safe_statuses=frozenset())
    assert decide(_status(ServerError, 503), is_create=True, config=cfg) is U


def test_backoff_grows_with_jitter_and_cap() -> None:
    """Backoff doubles with equal jitter and never exceeds the cap, even for huge attempts."""
    rng = random.Random(1)
    cfg = RetryConfig(initial_backoff=1, max_backoff=10)
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (10_000, 10)]:
        for _ in range(20):
            d = backoff_delay(attempt, cfg, rng=rng)
            assert full / 2 <= d <= full


def test_retry_after_wins_and_is_capped() -> None:
    """A server Retry-After longer than the backoff is honoured, capped by max_retry_after."""
    cfg = RetryConfig(max_retry_after=60)
    assert backoff_delay(1, cfg, retry_after=7.5) == 7.5
    assert backoff_delay(1, cfg, retry_after=3600) == 60


@pytest.mark.parametrize("retry_after", [0.0, -5.0, 0.001])
def test_retry_after_is_floored_at_the_computed_backoff(retry_after: float) -> None:
    """Retry-After 0, negative or tiny is not 'retry now': the computed backoff is the floor."""
    cfg = RetryConfig(initial_backoff=1, max_backoff=10)
    for attempt, full in [(1, 1), (3, 4), (9, 10)]:
        d = backoff_delay(attempt, cfg, retry_after=retry_after, rng=random.Random(2))
        assert full / 2 <= d <= full


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        (" 10 ", 10.0),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Delay-seconds (fractions too) parse; garbage gives None."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP date gives the seconds until then; a past date gives 0."""
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_config_rejects_nonsense() -> None:
    """RetryConfig validates its numbers."""
    with pytest.raises(ValueError, match="max_attempts"):
        RetryConfig(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryConfig(initial_backoff=-1)
    with pytest.raises(ValueError, match="multiplier"):
        RetryConfig(multiplier=0.5)
