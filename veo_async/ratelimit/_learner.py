"""The pace learner: finds a pace just under the server's limit from what it let through.

Pure: every time is passed in by the caller. The rules are in the :mod:`veo_async.ratelimit`
package docstring; each is one method here.
"""

from __future__ import annotations

import math

from ._counts import AnswerWindows, Epoch, Press, is_significant, noise_run
from ._tuning import GovernorTuning, PaceState

__all__ = ["PaceLearner"]


class PaceLearner:
    """Learns ``learned_rate`` from answers and 429s; the methods that may set a new pace
    return whether they did (the caller then drops saved-up tokens)."""

    def __init__(
        self, tuning: GovernorTuning, *, configured_rate: float | None, time_scale: float
    ) -> None:
        self.tuning = tuning
        self.configured_rate = configured_rate
        self.time_scale = time_scale
        #: Pace learned from 429s (requests per second), or ``None``.
        self.learned_rate: float | None = None
        #: The best rate the server was measured to let through (the relative floor's base).
        self.ceiling: float | None = None
        self.state = PaceState.UNPACED
        #: The refused share found not to depend on the rate (0 until such 429s are seen).
        self.noise = 0.0
        self.lowered = 0
        self.probes = 0
        self.probes_failed = 0
        self._settled_rate: float | None = None
        self._probe_factor = 1.0
        self._probe_base: float | None = None
        self._epoch_start = -math.inf
        self._epoch_sent = 0
        self._last_unheld = -math.inf
        self._windows = AnswerWindows(tuning.count_seconds * time_scale)
        self._press = Press(tuning.release_batch_seconds)
        # Successes since the first 429 of a burst: the server's rate once its burst
        # allowance was drained (what a first pace is set from).
        self._since_refusal = Press(tuning.release_batch_seconds)
        self._since_limited = 0  # the 429s of requests released since then
        self._chain: list[Epoch] = []
        self._pace_set = False
        # The highest pace probes may reach until ``_ceiling_until`` (below a measured limit,
        # a pace that drew a 429 while pressing, or at the pace a failed probe went back to);
        # each failed probe doubles the memory.
        self._probe_cap: float | None = None
        self._ceiling_until = -math.inf
        self._ceiling_factor = 1.0

    @property
    def rate(self) -> float | None:
        """The rate enforced: the lower of the configured and the learned one (or ``None``)."""
        configured, learned = self.configured_rate, self.learned_rate
        if configured is None:
            return learned
        if learned is None:
            return configured
        return min(configured, learned)

    # ------------------------------------------------------------------ events

    def released(self, now: float, held: bool) -> bool:
        """A request was released at ``now`` (``held``: it had to wait)."""
        self._pace_set = False
        self._epoch_sent += 1
        if not held:
            self._last_unheld = now
        if not held and self._press.start is not None:
            # The press measures the server's rate only while we press against it: a request
            # that did not wait means the demand fell below the pace, and a span of that
            # (a batch between two waves) would measure the demand, not the limit (issue 16:
            # a pace of 13.8/s "measured" at 3.3/s over 45 s of quiet, then every poll waited).
            self._press.begin(now)
        if self.learned_rate is not None:
            self._advance(now, held)
        return self._pace_set

    def admitted(self, now: float, sent_at: float | None) -> bool:
        """The server let a request through (any answer but a 429)."""
        self._pace_set = False
        if self._in_epoch(sent_at):
            self._windows.roll(now)
            self._windows.ok += 1
        self._press.admitted(now, sent_at)
        self._since_refusal.admitted(now, sent_at)
        if self.learned_rate is not None:
            self._advance(now, False)
        return self._pace_set

    def counted_refusal(self, now: float, sent_at: float | None) -> None:
        """Count a 429 (every one; whether it is a new decision is the pause's call)."""
        if self._in_epoch(sent_at):
            self._windows.roll(now)
            self._windows.limited += 1
        since = self._since_refusal.start
        if since is not None and (sent_at is None or sent_at >= since):
            self._since_limited += 1

    def refused(self, now: float, *, holding: bool) -> bool:
        """Decide on a 429 that starts a new burst (``holding``: the pace holds requests back)."""
        self._pace_set = False
        state = self.state
        since = self._since_refusal
        stale = since.start is not None and now - since.start > self.tuning.count_seconds * (
            self.time_scale
        )
        if since.start is None or stale:
            # measure what the server lets through from the first 429 of this burst (one
            # begun long ago may span a quiet spell)
            since.begin(now)
            self._since_limited = 0
        if state is PaceState.PROBING or (
            state is PaceState.SETTLED and self._probe_base is not None
        ):
            self._probe_failed(now)
        elif holding and self._pressed_cut_applies() and self._pace_stood(now):
            self._cut_pressed(now)
        elif self._shows_limit(holding) and not self._noise_found(now):
            self._lower(now)
        return self._pace_set

    def limit_shown(self) -> bool:
        """Whether the answers counted in this epoch show a limit (a share of 429s clearly
        above the noise), or a pace is still being verified: a 429 then calls for pausing
        every request, not only the refused one."""
        if self.state is PaceState.VERIFYING or self.state is PaceState.PROBING:
            return True
        t = self.tuning
        limited, answered, share = self._windows.counted()
        tolerance = max(t.noise_tolerance, self.noise)
        return limited >= t.min_evidence and is_significant(share, answered, tolerance, t)

    def adopt(self, rate: float, now: float) -> bool:
        """Take a lower pace learned elsewhere (another process on the same key) as settled.

        Only lowers: a pace at or above the one enforced now is ignored (returns ``False``).
        The adopted pace is probed upwards like a learned one.
        """
        current = self.rate
        if current is not None and rate >= current:
            return False
        self._pace_set = False
        self._press.stop()
        self._chain.clear()
        self._probe_base = None
        self._set_pace(max(self.tuning.floor, rate), PaceState.SETTLED, now)
        return True

    def probe_cap(self, now: float) -> float | None:
        """The highest pace a probe may reach at ``now`` (``None``: no ceiling remembered)."""
        if self._probe_cap is None or now >= self._ceiling_until:
            return None
        return self._probe_cap

    # ------------------------------------------------------------------ decisions

    def _remember_ceiling(self, cap: float, now: float, *, failed_probe: bool = False) -> None:
        """Probes go no higher than ``cap`` for a while (``ceiling_memory_intervals`` x
        ``probe_seconds``, doubled by every failed probe, without bound)."""
        t = self.tuning
        if failed_probe:
            self._ceiling_factor *= 2.0
        memory = t.ceiling_memory_intervals * t.probe_seconds * self._ceiling_factor
        until = now + memory * self.time_scale
        current = self.probe_cap(now)
        if current is None:
            self._probe_cap, self._ceiling_until = cap, until
            return
        self._probe_cap = min(current, cap)
        self._ceiling_until = max(self._ceiling_until, until)

    def _below_limit(self, rate: float, now: float) -> None:
        """``rate`` is the server's limit (measured) or above it (a pace that drew a 429 while
        the batch pressed against it): probes stay below it (``probe_ceiling_margin``)."""
        self._remember_ceiling(self.tuning.probe_ceiling_margin * rate, now)

    def _in_epoch(self, sent_at: float | None) -> bool:
        return sent_at is None or sent_at >= self._epoch_start

    def _probe_failed(self, now: float) -> None:
        """The probe found the limit (perhaps only once the server's burst allowance had
        drained, after the probe stood): back to the pace below it, probe less often."""
        t = self.tuning
        self.probes_failed += 1
        self._probe_factor = min(t.probe_max_factor, self._probe_factor * t.probe_backoff)
        if self.state is PaceState.PROBING:
            base = self._settled_rate  # (a standing probe below it keeps its own base)
        else:
            base, self._probe_base = self._probe_base, None
        if base is not None:
            # no probe above the pace that held until the memory lapses (issue 16: a probe
            # that stood a few percent above the limit was made again every 6 minutes, and
            # probes between the two paces would only find the limit one 429 at a time)
            self._remember_ceiling(base, now, failed_probe=True)
        self._set_pace(base, PaceState.SETTLED, now)

    def _pressed_cut_applies(self) -> bool:
        """Whether a 429 at a settled pace that holds requests back is taken as the pace's own.

        The pace holding requests back means the batch presses against it, so the 429 says the
        pace is above the server's rate: a pace a few percent too high passes
        ``verify_seconds`` (the server's burst allowance hides the excess) and then draws one
        429 each time the batch presses long enough (issue 16). Not once 429s were found to be
        noise (those keep the rule of :meth:`_shows_limit`)."""
        return self.tuning.pressed_cut < 1.0 and self.noise == 0.0

    def _pace_stood(self, now: float) -> bool:
        """Whether the pace stood ``verify_seconds`` without a 429: settled, or still being
        verified because the batch never pressed it (a first burst's pace, then a batch asking
        for less until its first wave of jobs finished). A 429 while such a pace holds
        requests back is the pace's own: a first burst measured a few percent too high (2 to
        7 % at time scale 0.1, where the jitter of the releases is a larger share of the
        span) drew a 429 every few seconds of the first wave, three in a row (issue 16)."""
        if self.state is PaceState.SETTLED:
            return True
        return (
            self.state is PaceState.VERIFYING
            and now - self._epoch_start >= self.tuning.verify_seconds * self.time_scale
        )

    def _cut_pressed(self, now: float) -> None:
        """Lower a settled pace that drew a 429 while pressing by ``pressed_cut``, below the
        pace that was refused, and verify it again (a 429 while verifying measures the
        server's rate from then on, as after a first burst)."""
        t = self.tuning
        current = self.learned_rate
        assert current is not None
        self._below_limit(current, now)
        new = t.pressed_cut * current
        if self.ceiling:
            new = max(new, t.relative_floor * self.ceiling)
        self._since_refusal.stop()
        self._press.begin(now)
        _, answered, share = self._windows.counted()
        self._chain = [(current, share, answered)]
        self.lowered += 1
        self._probe_factor = 1.0
        self._probe_base = None
        self._set_pace(max(t.floor, min(new, current)), PaceState.VERIFYING, now)

    def _shows_limit(self, holding: bool) -> bool:
        """Whether the counted answers show a limit worth lowering the pace for."""
        t = self.tuning
        limited, answered, share = self._windows.counted()
        state = self.state
        if state is PaceState.UNPACED or (state is PaceState.SETTLED and not holding):
            # No pace, or one that holds nothing back (the batch now asks for less): only a
            # share of 429s clearly above noise shows a limit; scattered 429s only pause.
            tolerance = max(t.noise_tolerance, self.noise)
            shown = limited >= t.min_evidence and is_significant(share, answered, tolerance, t)
            return (shown or self._burst_shows_limit(tolerance)) and self._measured_since_refusal()
        if state is PaceState.SETTLED:
            # isolated 429s at a verified pace only pause
            return limited >= t.min_evidence and share > self.noise
        # verifying: a small excess or noise only pauses until more answers are in, and the
        # server's rate cannot be measured from too few answers
        if answered < t.verify_min_answers and share < t.verify_clear_share:
            return False
        if not self._press.enough(t.press_min_answers):
            # not pressed long enough to measure (a pace verified in a quiet spell, then a
            # wave): measured from the burst instead, as without a pace
            tolerance = max(t.noise_tolerance, self.noise)
            return self._burst_shows_limit(tolerance) and self._since_measurable()
        self._chain.append((self.learned_rate, share, answered))
        return True

    def _burst_shows_limit(self, tolerance: float) -> bool:
        """Whether the answers since the first 429 of this burst show a limit, when the
        windows do not: a wave of requests above the limit after a quiet spell refuses a
        share of the wave, which is a small share of the windows (issue 16: every wave of a
        batch drew a dozen 429s, never enough to pace it)."""
        t = self.tuning
        limited = self._since_limited
        answered = limited + self._since_refusal.ok
        if self._since_refusal.start is None or limited < t.min_evidence:
            return False
        if answered < t.verify_min_answers:
            return False
        return is_significant(limited / answered, answered, tolerance, t)

    def _measured_since_refusal(self) -> bool:
        """Whether the server's rate can be measured since the first 429 of this burst (else
        the limit only pauses until it can: a pace from the windows would count the server's
        burst allowance, or a quiet spell before the burst)."""
        return self._since_refusal.start is None or self._since_measurable()

    def _since_measurable(self) -> bool:
        """Whether enough was let through since the first 429 of this burst, over a long
        enough span, to measure the server's rate: ``min_measured_answers`` over
        ``min_measured_seconds`` at least (a handful of releases a few tenths of a second
        apart measured 11 to 14/s against a 10/s limit, issue 16)."""
        t = self.tuning
        since = self._since_refusal
        return (
            since.enough(t.min_measured_answers)
            and since.last - since.first >= t.min_measured_seconds * self.time_scale
        )

    def _noise_found(self, now: float) -> bool:
        """Lowerings that left the refused share unchanged: noise, not a limit.

        The pace then goes back to ``headroom`` x the first pace of the run (where only noise
        was left; unpaced if that was the base), and 429s up to ``noise_margin`` x that share
        no longer lower it.
        """
        if self.state is not PaceState.VERIFYING:
            return False
        t = self.tuning
        run = noise_run(self._chain, t)
        if run is None:
            return False
        mean_share = sum(share for _, share, _ in run) / len(run)
        self.noise = max(self.noise, min(t.noise_max, t.noise_margin * mean_share))
        first = run[-1][0]
        restore = None if first is None else t.headroom * first
        self._chain.clear()
        self._press.stop()
        state = PaceState.SETTLED if restore is not None else PaceState.UNPACED
        self._set_pace(restore, state, now)
        return True

    def _lower(self, now: float) -> None:
        t = self.tuning
        press = self._press
        if self.state is PaceState.VERIFYING and press.enough(t.press_min_answers):
            # Still over the limit: measure since the start of the chain (the burst allowance
            # the first estimate included has been drained since), between the release times
            # of the first and last requests let through (a token bucket admits one per
            # refill interval while we press; answers still in flight would bias a count over
            # elapsed time low).
            let_through = press.rate()
            self.ceiling = max(self.ceiling or 0.0, let_through)
            self._below_limit(let_through, now)
        else:
            since = self._since_refusal
            if self._since_measurable():
                # Since the first 429 of this burst the server let through only its rate:
                # the windows also count its burst allowance (a pace above the limit,
                # which a quiet spell then "verified") and any quiet spell before the burst
                # (a pace far below the limit).
                let_through = since.rate()
                self._below_limit(let_through, now)
            else:
                let_through = self._windows.let_through(now, t.min_measured_answers)
            since.stop()
            press.begin(now)
            _, answered, share = self._windows.counted()
            self._chain = [(self.learned_rate, share, answered)]
        current = self.rate
        if let_through > 0:
            new = t.headroom * let_through
            if current is not None:
                new = min(new, current)
        elif current is not None:
            new = t.blind_cut * current
        else:
            return  # too little has succeeded to know the server's rate: pause only
        if self.ceiling:
            new = max(new, t.relative_floor * self.ceiling)
        self.lowered += 1
        self._probe_factor = 1.0
        self._probe_base = None
        self._set_pace(max(t.floor, new), PaceState.VERIFYING, now)

    def _advance(self, now: float, held: bool) -> None:
        """Settle a verified pace or an unrefuted probe; probe upwards while holding back."""
        t = self.tuning
        state = self.state
        age = now - self._epoch_start
        scale = self.time_scale
        if state is PaceState.VERIFYING and age >= t.verify_seconds * scale and self._tested(age):
            self._press.stop()
            self._chain.clear()
            self._set_pace(self.learned_rate, PaceState.SETTLED, now)
        elif (
            state is PaceState.PROBING and age >= t.probe_stand_intervals * t.probe_seconds * scale
        ):
            self._probe_stands(now, age)
        elif (
            state is PaceState.SETTLED
            and held
            and t.probe_step > 0
            and age >= t.probe_seconds * self._probe_factor * scale
            and now - self._last_unheld >= t.probe_seconds * self._probe_factor * scale
        ):
            learned = self.learned_rate
            assert learned is not None
            target = learned * (1.0 + t.probe_step)
            cap = self.probe_cap(now)
            if cap is not None:
                # stay below a limit measured or refused within the memory: a probe above it
                # can only draw a 429 (or hide one behind the server's burst allowance)
                target = min(target, cap)
                if target < learned * (1.0 + t.probe_step / 4.0):
                    return
            elif (
                self._probe_cap is not None
                and target > self._probe_cap
                and now - self._last_unheld < t.ceiling_probe_hold_seconds * scale
            ):
                return  # above a lapsed ceiling: only for a backlog, not for a wave
            self._settled_rate = learned
            self.probes += 1
            self.learned_rate = target
            self.state = PaceState.PROBING
            self._new_epoch(now)

    def _tested(self, age: float) -> bool:
        """Whether the pace being verified was pressed: requests went at half of it or more
        over the epoch. A pace the batch never came near (it asked for less once the first
        burst was over) proves nothing: it stays being verified, so the first 429 when the
        demand comes back measures the limit again instead of counting as noise."""
        learned = self.learned_rate
        return learned is None or self._epoch_sent >= 0.5 * learned * age

    def _probe_stands(self, now: float, age: float) -> None:
        """A probe without a 429 stands, but the pace below it is kept as its base: a server's
        burst allowance can hide a small excess for a long while. A probe that was never
        tested (fewer requests went than the old pace allowed) does not stand."""
        base = self._settled_rate
        if base is not None and self._epoch_sent < base * age:
            self._set_pace(base, PaceState.SETTLED, now)
            return
        self._set_pace(self.learned_rate, PaceState.SETTLED, now)
        self._probe_base = base

    def _set_pace(self, rate: float | None, state: PaceState, now: float) -> None:
        self.learned_rate = rate
        self.state = state if rate is not None else PaceState.UNPACED
        if state is PaceState.SETTLED:
            self._settled_rate = rate
        self._new_epoch(now)
        self._pace_set = True

    def _new_epoch(self, now: float) -> None:
        self._epoch_start = now
        self._epoch_sent = 0
        self._windows.reset(now)
