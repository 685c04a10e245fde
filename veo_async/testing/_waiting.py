"""The no-waiting switch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .._timing import set_no_waiting

__all__ = ["no_waiting"]


@contextlib.contextmanager
def no_waiting() -> Iterator[None]:
    """Within this block, retry backoff, poll intervals and rate-limit pauses take no time.

    ``with no_waiting(): await client.wait(gid)`` polls back to back. Process-wide (like
    stamina's testing mode); restores the previous setting on exit.
    """
    previous = set_no_waiting(True)
    try:
        yield
    finally:
        set_no_waiting(previous)
