"""Clock and sleep used by every waiting part of the SDK, with a testing switch.

All waiting (retry backoff, poll intervals, rate-limit pauses) goes through :func:`sleep`, so
``veo_async.testing.no_waiting()`` can remove it for fast tests, as stamina's testing mode does.
"""

from __future__ import annotations

import time

import anyio

_no_wait = False


def set_no_waiting(enabled: bool) -> bool:
    """Turn the no-waiting switch on or off; returns the previous value."""
    global _no_wait
    previous = _no_wait
    _no_wait = enabled
    return previous


def waiting_disabled() -> bool:
    """Whether the no-waiting testing switch is on."""
    return _no_wait


async def sleep(seconds: float) -> None:
    """Sleep ``seconds`` (a checkpoint only, when waiting is disabled for tests)."""
    if _no_wait or seconds <= 0:
        await anyio.lowlevel.checkpoint()
        return
    await anyio.sleep(seconds)


def monotonic() -> float:
    """The monotonic clock the SDK measures intervals with."""
    return time.monotonic()
