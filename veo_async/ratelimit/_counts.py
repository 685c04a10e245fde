"""What the server let through: rolling answer counts, the press measurement, the noise test.

Pure: every time is passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._tuning import GovernorTuning

__all__ = ["AnswerWindows", "Press", "is_significant", "noise_run"]

Epoch = tuple[float | None, float, int]
"""One verifying epoch of a chain of lowerings: (pace, refused share, answers)."""


class AnswerWindows:
    """Answers and 429s of the requests released in this epoch, in the last one or two
    ``width``-second windows."""

    __slots__ = ("limited", "ok", "prev_limited", "prev_ok", "prev_start", "start", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.start: float | None = None
        self.ok = 0
        self.limited = 0
        self.prev_start: float | None = None
        self.prev_ok = 0
        self.prev_limited = 0

    def reset(self, now: float) -> None:
        """Start counting afresh at ``now`` (a new epoch)."""
        self.start, self.ok, self.limited = now, 0, 0
        self.prev_start, self.prev_ok, self.prev_limited = None, 0, 0

    def roll(self, now: float) -> None:
        """Keep the counts to the last one or two windows."""
        start = self.start
        if start is None:
            self.start = now
            return
        if now - start < self.width:
            return
        if now - start < 2 * self.width:
            self.prev_start, self.prev_ok, self.prev_limited = start, self.ok, self.limited
        else:
            self.prev_start, self.prev_ok, self.prev_limited = None, 0, 0
        self.start, self.ok, self.limited = now, 0, 0

    def counted(self) -> tuple[int, int, float]:
        """429s, answers and the refused share in the windows (share 1 if none)."""
        limited = self.limited + self.prev_limited
        answered = limited + self.ok + self.prev_ok
        return limited, answered, limited / answered if answered else 1.0

    def let_through(self, now: float, min_answers: int) -> float:
        """Answers per second the server let through in the windows (0 if too few)."""
        ok = self.ok + self.prev_ok
        start = self.prev_start if self.prev_start is not None else self.start
        if ok < min_answers or start is None or now <= start:
            return 0.0
        return ok / (now - start)


class Press:
    """Successes since the first lowering of a chain of verifying epochs.

    The whole span was spent pressing against the limit, so the rate between the first and
    last release let through is the server's rate with its burst allowance drained.

    Requests released within ``batch_seconds`` of the first one let through are one batch
    (the end of a pause releases every request it held at once): the server let those through
    on tokens it saved *before* the first release, so they are not part of the rate over the
    span. Counting the whole first batch (``ok - 1`` over the span) measured a 10/s limit at
    10.6 to 13.5/s in the first burst of a batch, a pace above the limit (issue 16).
    """

    __slots__ = ("batch_seconds", "first", "first_n", "last", "ok", "start")

    def __init__(self, batch_seconds: float = 0.0) -> None:
        self.batch_seconds = batch_seconds
        self.start: float | None = None
        self.ok = 0
        self.first = math.inf
        self.first_n = 0  # let through within batch_seconds of ``first``
        self.last = -math.inf

    def begin(self, now: float) -> None:
        """Start measuring at ``now``."""
        self.start, self.ok = now, 0
        self.first, self.last = math.inf, -math.inf
        self.first_n = 0

    def stop(self) -> None:
        """Stop measuring."""
        self.start = None

    def admitted(self, now: float, sent_at: float | None) -> None:
        """Count a request let through, if it was released while measuring."""
        if self.start is not None and (sent_at is None or sent_at >= self.start):
            self.ok += 1
            at = now if sent_at is None else sent_at
            if at < self.first - self.batch_seconds:
                self.first, self.first_n = at, 1  # an earlier batch: the later ones count
            elif at <= self.first + self.batch_seconds:
                self.first, self.first_n = min(self.first, at), self.first_n + 1
            self.last = max(self.last, at)

    def enough(self, min_answers: int) -> bool:
        """Whether enough was let through, over a span, to measure a rate."""
        return (
            self.start is not None
            and self.ok >= min_answers
            and self.ok > self.first_n
            and self.last > self.first
        )

    def rate(self) -> float:
        """Requests per second between the first and last release let through (the first
        batch of releases not counted: it was let through on tokens saved before)."""
        return (self.ok - self.first_n) / (self.last - self.first)


def is_significant(share: float, answered: int, tolerance: float, tuning: GovernorTuning) -> bool:
    """Whether ``share`` of ``answered`` refused shows more than ``tolerance`` of noise.

    It must exceed the tolerance by ``significance_sigmas`` standard errors of a share of that
    many answers: at a few requests per second the counted windows hold a few dozen answers,
    and 3 random 429s among 30 (10 %) are a fluke of 2 % noise.
    """
    if answered <= 0:
        return False
    margin = tuning.significance_sigmas * math.sqrt(tolerance * (1.0 - tolerance) / answered)
    return share > min(tolerance + margin, tuning.max_significant_share)


def noise_run(chain: Sequence[Epoch], tuning: GovernorTuning) -> list[Epoch] | None:
    """The run of recent epochs showing 429s that do not depend on the rate, or ``None``.

    A real limit refuses less at each lower pace (nothing at all below it); 429s that do not
    depend on the rate refuse the same share at any pace. The run is the longest one of
    recent epochs (``noise_min_answers`` answers or more each, but for the chain's base) whose
    shares are within ``noise_share_ratio`` of each other; it shows noise when it has
    ``noise_min_epochs`` epochs over paces that span ``noise_pace_spread``. Newest first.
    """
    run: list[Epoch] = []
    for i in range(len(chain) - 1, -1, -1):
        entry = chain[i]
        if entry[2] < tuning.noise_min_answers and i > 0:  # the base counts whatever its size
            break
        shares = [share for _, share, _ in run] + [entry[1]]
        if min(shares) < tuning.noise_share_ratio * max(shares):
            break
        run.append(entry)
    if len(run) < tuning.noise_min_epochs:
        return None
    paces = [math.inf if pace is None else pace for pace, _, _ in run]
    if max(paces) < tuning.noise_pace_spread * min(paces):
        return None  # the pace hardly changed: no test of rate dependence yet
    return run
