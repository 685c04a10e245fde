"""The shared request-rate governor: one per client, used by every create, poll and get.

It does three things, all free when unused (no lock, no sleep, a few counters):

* an optional client-side rate (``requests_per_second``) as a token bucket;
* a **whole-pipeline pause** after a 429: every request waits until the ``Retry-After`` (or a
  backoff) has passed, instead of each request discovering the limit on its own;
* a **learned pace** that stays just under the server's limit, found from what the server let
  through, and probed upwards only rarely.

How the pace is learned
-----------------------
Time is cut into *epochs*: each starts when the pace changes. For the requests released in the
current epoch the governor counts the answers the server let through (anything but a 429, since
a 5xx was still admitted by the server's limiter) and the 429s.

1. **No pace yet.** A 429 lowers nothing unless the epoch shows a limit: at least
   ``min_evidence`` 429s *and* more than ``noise_tolerance`` (10 %) of its answers refused,
   by two standard errors of a share of that many answers (see :meth:`RateGovernor.
   _significant`).
   Scattered 429s that do not depend on the request rate (a flaky gateway, random throttling:
   the fault soak's 4.4 %) only pause; they never pace the batch.
2. **Lowering.** The pace becomes ``headroom`` (0.97) times the rate the server let through
   during the epoch (answers per second while we pressed against it: for a token bucket that
   is its refill rate, plus the burst allowance spread over the epoch). The next epoch is a
   *verifying* one: a correct pace draws no 429 at all, so any new 429 in it lowers again, from
   a measurement that no longer includes the initial burst. Two lowerings usually suffice.
3. **Settled.** Once ``verify_seconds`` pass without a 429 the pace is settled.
4. **Probing.** While the pace is actually holding requests back, every ``probe_seconds`` it
   is raised by ``probe_step`` (4 %) to find a limit that has grown. The probe stands after
   four more intervals without a 429, if requests went faster than the old pace. A 429
   during a probe, or at the pace it reached before the next probe (a server's burst
   allowance can hide a small excess for a long while), reverts to the pace below it and
   doubles the probe interval (up to 16x), so a fixed limit costs one 429 per ever-longer
   interval instead of a sawtooth of bursts. At a settled pace an isolated 429 only
   pauses; ``min_evidence`` of them within ``count_seconds`` lower the pace again (a limit
   that tightened), but only while the pace is holding requests back: one that holds
   nothing back (the batch asks for less now) is judged by rule 1, like no pace at all.
5. **Noise.** A chain of lowerings that leaves the refused share unchanged shows 429s that
   do not depend on the rate: the pace goes back up and such a share only pauses from then
   on (``noise``; see :meth:`RateGovernor._rate_independent`).

The learned pace never drops below ``relative_floor`` (0.3) times the best rate the server
was measured to let through in a verifying epoch (``ceiling``; measured once the burst
allowance was drained), nor below ``floor`` requests per second, so 429s that do not depend on
the rate, however many, cannot ratchet a batch down to a crawl. (The price: a limit that later
falls below 0.3x of that rate is honoured by the pauses alone.)
Durations (``verify_seconds``, ``probe_seconds``) are in service seconds: with ``time_scale``
(a time-compressed emulator) they shrink with it.

A 429 for a request *sent before* the governor reacted to an earlier 429 belongs to the same
burst: it extends the pause if needed but is not a new decision. ``bursts`` counts new
decisions; ``rate_limited`` every 429; ``rate_limited_after_reaction`` the 429s of requests
released after the first reaction (the ones pacing could have avoided); ``lowered`` and
``probes_failed`` count pace changes.

Waiters are served in FIFO order (an ``anyio.Lock`` is fair), so no request starves. Time comes
from ``veo_async._timing`` (a testing switch removes all waiting).
"""

from __future__ import annotations

import math

import anyio

from . import _timing

__all__ = ["RateGovernor"]

_UNPACED = "unpaced"
_VERIFYING = "verifying"
_SETTLED = "settled"
_PROBING = "probing"


class RateGovernor:
    """Paces requests: optional fixed rate, global pause on 429, learned pace, rare probes."""

    def __init__(
        self,
        requests_per_second: float | None = None,
        *,
        burst: int | None = None,
        time_scale: float = 1.0,
        headroom: float = 0.97,
        noise_tolerance: float = 0.1,
        min_evidence: int = 3,
        verify_seconds: float = 10.0,
        probe_seconds: float = 15.0,
        probe_step: float = 0.04,
        count_seconds: float = 10.0,
        floor: float = 0.2,
        relative_floor: float = 0.3,
    ) -> None:
        if requests_per_second is not None and not requests_per_second > 0:
            raise ValueError("requests_per_second must be positive")
        if floor <= 0 or not time_scale > 0:
            raise ValueError("floor and time_scale must be positive")
        if not 0 < headroom <= 1 or not 0 <= noise_tolerance < 1 or probe_step < 0:
            raise ValueError(
                "headroom must be in (0, 1], noise_tolerance in [0, 1), probe_step >= 0"
            )
        if verify_seconds < 0 or probe_seconds <= 0 or count_seconds <= 0 or min_evidence < 1:
            raise ValueError(
                "verify_seconds >= 0, probe_seconds > 0, count_seconds > 0, min_evidence >= 1"
            )
        self.configured_rate = requests_per_second
        self._configured_burst = float(
            burst if burst is not None else max(1, math.ceil(requests_per_second or 1))
        )
        self.time_scale = time_scale
        self.headroom = headroom
        self.noise_tolerance = noise_tolerance
        self.min_evidence = min_evidence
        self.verify_seconds = verify_seconds
        self.probe_seconds = probe_seconds
        self.probe_step = probe_step
        self.count_seconds = count_seconds
        self.floor = floor
        self.relative_floor = relative_floor
        #: Pace learned from 429s (requests per second), or ``None``.
        self.learned_rate: float | None = None
        #: The best rate the server was measured to let through (the relative floor's base).
        self.ceiling: float | None = None
        #: ``"unpaced"``, ``"verifying"``, ``"settled"`` or ``"probing"`` (module docstring).
        self.state = _UNPACED
        self._settled_rate: float | None = None
        self._probe_factor = 1.0
        self._probe_base: float | None = None
        self._tokens = self._configured_burst
        self._last_refill = _timing.monotonic()
        self._pause_until = 0.0
        self._reacted_at = -math.inf
        self._held_at = -math.inf
        self._lock = anyio.Lock()
        self._epoch_start = -math.inf
        self._epoch_sent = 0
        # answers of requests released in this epoch, in two rolling count windows
        self._win_start: float | None = None
        self._win_ok = 0
        self._win_limited = 0
        self._prev_start: float | None = None
        self._prev_ok = 0
        self._prev_limited = 0
        # successes since the first lowering of a chain of verifying epochs: the whole span
        # was spent pressing against the limit, so this is the server's rate, burst drained
        self._press_start: float | None = None
        self._press_ok = 0
        self._press_first = math.inf
        self._press_last = -math.inf
        # (pace, refused share) of the verifying epochs of the current chain of lowerings
        self._chain: list[tuple[float | None, float, int]] = []
        #: The refused share found not to depend on the rate (0 until such 429s are seen).
        self.noise = 0.0
        self.rate_limited = 0
        self.rate_limited_after_reaction = 0
        self.bursts = 0
        self.lowered = 0
        self.probes = 0
        self.probes_failed = 0
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
    def holding(self) -> bool:
        """Whether requests were held back by the pace or a pause in the last two seconds."""
        return _timing.monotonic() - self._held_at <= 2.0 * self.time_scale

    @property
    def burst(self) -> float:
        """Token-bucket capacity: the configured burst, or a small one once a rate was learned.

        A learned pace allows ``1 + rate x 10 ms`` tokens: enough to make up for the event
        loop waking a release a few milliseconds late (a one-token bucket loses that time
        for good, 10-20 % of the pace at a few hundred requests per second), too few to burst.
        """
        learned = self.learned_rate
        if learned is None:
            return self._configured_burst
        return 1.0 + learned * 0.01

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
                    # no tokens accrue while paused: the server's own bucket did not refill
                    # beyond what its Retry-After asked for, so a burst would be refused
                    self._last_refill = max(self._last_refill, self._pause_until)
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
            now = _timing.monotonic()
            self._epoch_sent += 1
            if held:
                self._held_at = now
            if self.learned_rate is not None:
                self._advance(now, held)
            return now

    # ------------------------------------------------------------------ feedback

    def on_rate_limited(self, delay: float, *, sent_at: float | None = None) -> None:
        """A 429 came back: pause everything for ``delay`` seconds; decide once per burst."""
        self.rate_limited += 1
        now = _timing.monotonic()
        until = now + max(delay, 0.0)
        if until > self._pause_until:
            self.paused_seconds += until - max(self._pause_until, now)
            self._pause_until = until
        if sent_at is None or sent_at >= self._epoch_start:
            self._roll(now)
            self._win_limited += 1
        if sent_at is not None and sent_at < self._reacted_at:
            return  # same burst: already reacted
        if self.bursts:
            self.rate_limited_after_reaction += 1
        self.bursts += 1
        self._reacted_at = now
        state = self.state
        if state == _PROBING or (state == _SETTLED and self._probe_base is not None):
            # The probe found the limit (perhaps only once the server's burst allowance had
            # drained, after the probe stood): back to the pace below it, probe less often.
            self.probes_failed += 1
            self._probe_factor = min(16.0, self._probe_factor * 2.0)
            if state == _PROBING:
                base = self._settled_rate  # (a standing probe below it keeps its own base)
            else:
                base, self._probe_base = self._probe_base, None
            self._set_pace(base, _SETTLED, now)
            return
        limited, answered, share = self._counted()
        if state == _UNPACED or (state == _SETTLED and not self.holding):
            # No pace, or one that holds nothing back (the batch now asks for less): only a
            # share of 429s clearly above noise shows a limit.
            if limited < self.min_evidence or not self._significant(share, answered):
                return  # scattered 429s: pause only (see the module docstring)
        elif state == _SETTLED:
            if limited < self.min_evidence or share <= self.noise:
                return  # isolated 429s at a verified pace: pause only
        else:  # verifying
            if answered < 20 and share < 0.5:
                return  # a small excess, or noise: pause, decide on more answers
            press = self._press_start
            if press is None or self._press_ok < 10 or self._press_last <= self._press_first:
                return  # too few answers to measure the server's rate yet: pause only
            self._chain.append((self.learned_rate, share, answered))
            if self._rate_independent():
                return
        self._lower(now)

    def _significant(self, share: float, answered: int) -> bool:
        """Whether ``share`` of ``answered`` refused shows more than tolerated noise.

        It must exceed the tolerance (``noise_tolerance``, or the ``noise`` found) by two
        standard errors of a share of that many answers. At a few requests per second the
        counted windows hold a few dozen answers, and 3 random 429s among 30 (10 %) are a
        fluke of 2 % noise; taken for a limit, a chain of them lowered the pace to a sixth of
        what the batch needed (the 10,000-job fault benchmark, once its creates were done).
        """
        if answered <= 0:
            return False
        tolerance = max(self.noise_tolerance, self.noise)
        margin = 2.0 * math.sqrt(tolerance * (1.0 - tolerance) / answered)
        return share > min(tolerance + margin, 0.5)

    def _rate_independent(self) -> bool:
        """Lowerings that left the refused share unchanged: noise, not a limit.

        A real limit refuses less at each lower pace (nothing at all below it); 429s that do
        not depend on the rate refuse the same share at any pace. The test looks at the
        longest run of recent epochs (20 answers or more each, but for the chain's base)
        whose shares are within 0.7x of each other: three or more, over paces that span
        15 %, mean noise. The pace then goes back to ``headroom`` x the first pace of that
        run (where only noise was left; unpaced if that was the base), and 429s up to 1.5x
        that share no longer lower it.
        """
        run: list[tuple[float | None, float, int]] = []
        for i in range(len(self._chain) - 1, -1, -1):
            entry = self._chain[i]
            if entry[2] < 20 and i > 0:  # (the chain's base counts whatever its size)
                break
            shares = [share for _, share, _ in run] + [entry[1]]
            if min(shares) < 0.7 * max(shares):
                break
            run.append(entry)
        if len(run) < 3:
            return False
        paces = [math.inf if pace is None else pace for pace, _, _ in run]
        if max(paces) < 1.15 * min(paces):
            return False  # the pace hardly changed: no test of rate dependence yet
        self.noise = max(self.noise, min(0.9, 1.5 * sum(share for _, share, _ in run) / len(run)))
        first = run[-1][0]
        restore = None if first is None else self.headroom * first
        self._chain.clear()
        self._press_start = None
        self._set_pace(restore, _SETTLED if restore is not None else _UNPACED, _timing.monotonic())
        return True

    def on_success(self, *, sent_at: float | None = None) -> None:
        """The server let a request through (any answer but a 429): count it."""
        now = _timing.monotonic()
        if sent_at is None or sent_at >= self._epoch_start:
            self._roll(now)
            self._win_ok += 1
        press = self._press_start
        if press is not None and (sent_at is None or sent_at >= press):
            self._press_ok += 1
            at = now if sent_at is None else sent_at
            self._press_first = min(self._press_first, at)
            self._press_last = max(self._press_last, at)
        if self.learned_rate is not None:
            self._advance(now, False)

    # ------------------------------------------------------------------ internals

    def _roll(self, now: float) -> None:
        """Keep the answer counts to the last one or two ``count_seconds`` windows."""
        start = self._win_start
        if start is None:
            self._win_start = now
            return
        width = self.count_seconds * self.time_scale
        if now - start < width:
            return
        if now - start < 2 * width:
            self._prev_start, self._prev_ok, self._prev_limited = (
                start,
                self._win_ok,
                self._win_limited,
            )
        else:
            self._prev_start, self._prev_ok, self._prev_limited = None, 0, 0
        self._win_start, self._win_ok, self._win_limited = now, 0, 0

    def _counted(self) -> tuple[int, int, float]:
        """429s, answers and the refused share in the counted windows (share 1 if none)."""
        limited = self._win_limited + self._prev_limited
        answered = limited + self._win_ok + self._prev_ok
        return limited, answered, limited / answered if answered else 1.0

    def _let_through(self, now: float) -> float:
        """Answers per second the server let through in the counted windows (0 if too few)."""
        ok = self._win_ok + self._prev_ok
        start = self._prev_start if self._prev_start is not None else self._win_start
        if ok < 5 or start is None or now <= start:
            return 0.0
        return ok / (now - start)

    def _lower(self, now: float) -> None:
        press = self._press_start
        if self.state == _VERIFYING and press is not None:
            # Still over the limit: measure since the start of the chain (the burst allowance
            # the first estimate included has been drained since), between the release times
            # of the first and last requests let through (a token bucket admits one per
            # refill interval while we press; answers still in flight would bias a count
            # over elapsed time low). With too few answers the caller only paused.
            let_through = (self._press_ok - 1) / (self._press_last - self._press_first)
            self.ceiling = max(self.ceiling or 0.0, let_through)
        else:
            let_through = self._let_through(now)
            self._press_start, self._press_ok = now, 0
            self._press_first, self._press_last = math.inf, -math.inf
            _, answered, share = self._counted()
            self._chain = [(self.learned_rate, share, answered)]
        current = self.rate
        if let_through > 0:
            new = self.headroom * let_through
            if current is not None:
                new = min(new, current)
        elif current is not None:
            new = 0.7 * current
        else:
            return  # too little has succeeded to know the server's rate: pause only
        if self.ceiling:
            new = max(new, self.relative_floor * self.ceiling)
        self.lowered += 1
        self._probe_factor = 1.0
        self._probe_base = None
        self._set_pace(max(self.floor, new), _VERIFYING, now)

    def _set_pace(self, rate: float | None, state: str, now: float) -> None:
        self.learned_rate = rate
        self.state = state if rate is not None else _UNPACED
        if state == _SETTLED:
            self._settled_rate = rate
        self._new_epoch(now)
        self._tokens = min(self._tokens, 1.0)

    def _new_epoch(self, now: float) -> None:
        self._epoch_start = now
        self._epoch_sent = 0
        self._win_start, self._win_ok, self._win_limited = now, 0, 0
        self._prev_start, self._prev_ok, self._prev_limited = None, 0, 0

    def _advance(self, now: float, held: bool) -> None:
        """Settle a verified pace or an unrefuted probe; probe upwards while holding back."""
        state = self.state
        age = now - self._epoch_start
        scale = self.time_scale
        if state == _VERIFYING and age >= self.verify_seconds * scale:
            self._press_start = None
            self._chain.clear()
            self._set_pace(self.learned_rate, _SETTLED, now)
        elif state == _PROBING and age >= 4 * self.probe_seconds * scale:
            # A probe stands after four intervals without a 429, but the pace below it is
            # kept: a server's burst allowance can hide a small excess for a long while. A
            # probe that was never tested (fewer requests went than the old pace allowed)
            # does not stand.
            base = self._settled_rate
            if base is not None and self._epoch_sent < base * age:
                self._set_pace(base, _SETTLED, now)
                return
            self._set_pace(self.learned_rate, _SETTLED, now)
            self._probe_base = base
        elif (
            state == _SETTLED
            and held
            and self.probe_step > 0
            and age >= self.probe_seconds * self._probe_factor * scale
        ):
            learned = self.learned_rate
            assert learned is not None
            self._settled_rate = learned
            self.probes += 1
            self.learned_rate = learned * (1.0 + self.probe_step)
            self.state = _PROBING
            self._new_epoch(now)

    def _refill(self, now: float, rate: float) -> None:
        elapsed = max(now - self._last_refill, 0.0)
        self._last_refill = now
        self._tokens = min(self.burst, self._tokens + elapsed * rate)
