"""The governor's thresholds, named and documented in one frozen object, and its states."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["GovernorTuning", "PaceState"]


class PaceState(str, enum.Enum):
    """Where the learned pace stands (compares equal to its string value)."""

    UNPACED = "unpaced"
    """No pace learned: requests go as fast as asked (a 429 only pauses)."""
    VERIFYING = "verifying"
    """A pace was just set from a measurement; any 429 now measures again."""
    SETTLED = "settled"
    """The pace drew no 429 for ``verify_seconds``."""
    PROBING = "probing"
    """The pace was raised by ``probe_step`` to look for a limit that has grown."""


@dataclass(frozen=True)
class GovernorTuning:
    """Every threshold of the rate governor. Durations are in service seconds (they shrink
    with the governor's ``time_scale``); rates in requests per second.

    The defaults are what the benchmarks and the simulated-server tests were run with; change
    one at a time and rerun ``tests/test_ratelimit.py``.
    """

    # -- how a pace is set
    headroom: float = 0.97
    """A new pace is this fraction of the rate the server was measured to let through."""
    floor: float = 0.2
    """The learned pace never goes below this (requests per second)."""
    relative_floor: float = 0.3
    """Nor below this fraction of the best rate ever measured (``ceiling``), so 429s that do
    not depend on the rate cannot ratchet a batch down to a crawl."""
    blind_cut: float = 0.7
    """When a lowering has no measurement of the server's rate, the pace is cut by this
    factor (only while a pace exists; without one the 429 only pauses)."""
    pressed_cut: float = 0.9
    """A settled pace that draws a 429 while it holds requests back (the batch presses
    against it, so the 429 is the pace's own, not noise) is multiplied by this and verified
    again: a first pace a few percent above the limit passes ``verify_seconds`` while the
    server's burst allowance hides the excess, then draws a 429 each time the batch presses
    long enough (issue 16). 1 disables the rule (such 429s then lower the pace only once
    ``min_evidence`` of them are counted)."""
    catch_up_seconds: float = 0.01
    """A learned pace allows ``1 + rate x catch_up_seconds`` tokens, to make up for the event
    loop waking a release a few milliseconds late, without allowing a burst."""
    holding_seconds: float = 2.0
    """``holding`` is true for this long after a request last had to wait."""

    # -- is it a limit? (counting answers)
    count_seconds: float = 10.0
    """Width of each of the two rolling windows that count answers and 429s."""
    min_evidence: int = 3
    """429s needed in the counted windows before a pace is lowered."""
    noise_tolerance: float = 0.1
    """Refused share tolerated as noise before a limit is suspected."""
    significance_sigmas: float = 2.0
    """The refused share must exceed the tolerance by this many standard errors."""
    max_significant_share: float = 0.5
    """A refused share above this is always significant, however few the answers."""
    min_measured_answers: int = 5
    """Answers let through needed to measure a rate from the counted windows."""
    min_measured_seconds: float = 1.0
    """The rate let through since the first 429 of a burst is measured only over at least this
    span of releases (between the first and the last let through): over a few tenths of a
    second, the jitter of a handful of releases measured a 10/s limit at 11 to 14/s, a pace
    that then drew a 429 each time the batch pressed long enough (issue 16)."""

    release_batch_seconds: float = 0.003
    """Releases within this many *wall* seconds of the first one let through in a measurement
    are one batch (the end of a pause releases every request it held back at once): the
    server let them through on tokens saved before the measurement began, so they are not
    counted towards its rate (counting them measured a 10/s limit at 10.6 to 13.5/s over the
    first burst of a batch at time scale 0.1, and the pace stayed above the limit, issue 16).
    Not scaled: it is the time a batch of releases takes on the event loop."""

    # -- verifying a pace
    verify_seconds: float = 10.0
    """A pace is settled after this long without a 429."""
    verify_min_answers: int = 20
    """While verifying, fewer answers than this only pause ..."""
    verify_clear_share: float = 0.5
    """... unless at least this share of them was refused."""
    press_min_answers: int = 10
    """Answers let through since a chain of lowerings began, needed to measure again."""

    # -- probing upwards
    probe_seconds: float = 15.0
    """While the pace holds requests back, it is raised this often (times the probe factor),
    and only once it has held back every request for that long without a break: a batch held
    back only in waves (a burst of polls and creates, then a quiet spell) gains little from a
    faster pace, and a probe above the limit costs 429s (issue 16)."""
    probe_step: float = 0.04
    """Each probe raises the pace by this fraction (0 disables probing)."""
    probe_stand_intervals: float = 4.0
    """A probe stands after this many ``probe_seconds`` without a 429."""
    probe_backoff: float = 2.0
    """A failed probe multiplies the probe interval by this ..."""
    probe_max_factor: float = 16.0
    """... up to this factor."""
    ceiling_memory_intervals: float = 40.0
    """A rate the server was measured to let through, and a pace that drew a 429 while the
    batch pressed against it (a failed probe, a settled pace that was cut), are a *ceiling*:
    for this many ``probe_seconds`` (600 s by default) probes stay below it
    (``probe_ceiling_margin`` x it). Each failed probe doubles this memory, with no upper
    bound: a fixed limit pressed for hours costs one 429 per doubling (3 over 9,000 s), not
    one per ``probe_max_factor`` interval (26 over 9,000 s, issue 16), and a limit that grew
    is still found once the memory lapses. ``math.inf``: never probe above a ceiling."""
    probe_ceiling_margin: float = 0.99
    """While a ceiling is remembered, a probe goes at most to this fraction of it (a probe
    that would gain less than a quarter of ``probe_step`` is not made)."""
    ceiling_probe_hold_seconds: float = 60.0
    """A probe above a ceiling whose memory lapsed is made only once the pace held back every
    request for this long without a break (instead of ``probe_seconds``). A batch held back
    in waves (its jobs finishing together, for a few to a few dozen seconds) gains a fraction
    of a second per wave from a faster pace, and at the end of a wave the server's burst
    allowance is spent, so a probe above the limit draws a 429 at once (the 429 at 98 s of a
    1,000-job run, issue 16); a backlog that presses for minutes gains from it."""

    # -- telling noise from a limit
    noise_min_answers: int = 20
    """A verifying epoch counts towards the noise test only with this many answers."""
    noise_share_ratio: float = 0.7
    """Epochs whose refused shares are within this ratio of each other count as unchanged."""
    noise_min_epochs: int = 3
    """Unchanged shares over this many epochs ..."""
    noise_pace_spread: float = 1.15
    """... over paces that span this factor mean the 429s do not depend on the rate."""
    noise_margin: float = 1.5
    """The noise found is this multiple of the mean refused share of those epochs ..."""
    noise_max: float = 0.9
    """... capped here."""

    def __post_init__(self) -> None:
        if self.floor <= 0:
            raise ValueError("floor must be positive")
        if not self.ceiling_memory_intervals >= 0 or not 0 < self.probe_ceiling_margin <= 1:
            raise ValueError(
                "ceiling_memory_intervals must be >= 0, probe_ceiling_margin in (0, 1]"
            )
        if not 0 < self.pressed_cut <= 1:
            raise ValueError("pressed_cut must be in (0, 1]")
        if not 0 < self.headroom <= 1 or not 0 <= self.noise_tolerance < 1 or self.probe_step < 0:
            raise ValueError(
                "headroom must be in (0, 1], noise_tolerance in [0, 1), probe_step >= 0"
            )
        if (
            self.verify_seconds < 0
            or self.probe_seconds <= 0
            or self.count_seconds <= 0
            or self.min_evidence < 1
        ):
            raise ValueError(
                "verify_seconds >= 0, probe_seconds > 0, count_seconds > 0, min_evidence >= 1"
            )
