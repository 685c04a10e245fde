"""The rate governor on a fake clock against simulated servers: limits, noise, probes."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import anyio
import pytest

from veo_async import _timing
from veo_async.ratelimit import GovernorTuning, PaceState, RateGovernor, RateLimitPause, TokenBucket
from veo_async.ratelimit._counts import Press, is_significant, noise_run


class FakeClock:
    """A clock that only moves when the SDK sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Route ``_timing.monotonic``/``sleep`` through a fake clock."""
    fake = FakeClock()
    monkeypatch.setattr(_timing, "monotonic", fake.monotonic)
    monkeypatch.setattr(_timing, "sleep", fake.sleep)
    return fake


@pytest.mark.anyio
async def test_an_unused_governor_never_waits(clock: FakeClock) -> None:
    """No rate and no 429: acquire returns at once, without sleeping."""
    gov = RateGovernor()
    for _ in range(100):
        assert await gov.acquire() == clock.now
    assert clock.slept == [] and gov.rate is None


@pytest.mark.anyio
async def test_a_configured_rate_is_enforced(clock: FakeClock) -> None:
    """At 5 requests/s, 25 requests after the burst take about 5 s."""
    gov = RateGovernor(5)
    start = clock.now
    for _ in range(30):
        await gov.acquire()
    assert clock.now - start == pytest.approx(5.0, rel=0.01)


class Bucket:
    """A server-side token bucket (``rate`` per second, ``capacity`` tokens) on the fake clock."""

    def __init__(self, clock: FakeClock, rate: float, capacity: float) -> None:
        self.clock = clock
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.at = clock.now

    def take(self) -> float | None:
        """``None`` when admitted, else the Retry-After (seconds until a token)."""
        now = self.clock.now
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


async def drive(
    gov: RateGovernor,
    clock: FakeClock,
    seconds: float,
    *,
    demand: float,
    admit: Callable[[], float | None],
) -> list[tuple[float, bool]]:
    """Offer ``demand`` requests/s through ``gov`` for ``seconds``; returns (time, admitted)."""
    log: list[tuple[float, bool]] = []
    end = clock.now + seconds
    while clock.now < end:
        sent = await gov.acquire()
        retry_after = admit()
        if retry_after is None:
            gov.on_success(sent_at=sent)
        else:
            gov.on_rate_limited(retry_after, sent_at=sent)
        log.append((clock.now, retry_after is None))
        clock.now += 1.0 / demand
    return log


def admitted_rate(log: list[tuple[float, bool]], since: float) -> float:
    """Admitted requests per second from ``since`` to the end of ``log``."""
    ok = [t for t, admitted in log if admitted and t >= since]
    return len(ok) / (log[-1][0] - since)


@pytest.mark.anyio
async def test_a_real_limit_is_learned_and_then_respected(clock: FakeClock) -> None:
    """50 requests/s offered to a 10/s bucket: the pace settles just under 10/s, 429s stop."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    start = clock.now
    log = await drive(gov, clock, 300.0, demand=50.0, admit=server.take)
    assert gov.learned_rate is not None and 9.0 <= gov.learned_rate <= 10.5
    refused_late = [t for t, admitted in log if not admitted and t >= start + 30.0]
    # after the first 30 s only failed probes draw a 429, one each, ever more rarely
    assert len(refused_late) <= gov.probes_failed <= 4
    assert admitted_rate(log, start + 30.0) >= 9.3  # within 7 % of the limit
    assert gov.lowered <= 4


@pytest.mark.anyio
async def test_one_reaction_per_burst(clock: FakeClock) -> None:
    """429s of requests sent before the reaction are not new decisions."""
    gov = RateGovernor()
    sent = [await gov.acquire() for _ in range(10)]
    for s in sent[:5]:
        gov.on_success(sent_at=s)
    clock.now += 0.5
    gov.on_rate_limited(1.0, sent_at=sent[5])
    for s in sent[6:]:
        gov.on_rate_limited(1.0, sent_at=s)
    assert gov.bursts == 1 and gov.rate_limited == 5
    assert gov.rate_limited_after_reaction == 0
    later = await gov.acquire()
    assert clock.now >= sent[0] + 1.5  # the pause held everyone
    gov.on_rate_limited(1.0, sent_at=later)
    assert gov.bursts == 2 and gov.rate_limited_after_reaction == 1
    # 6 refused of 11 answers: a limit, but nothing was let through since the burst began,
    # so there is no rate to pace at yet (the windows would count the server's burst
    # allowance): every request pauses meanwhile
    assert gov.learned_rate is None
    before = clock.now
    await gov.acquire()
    assert clock.now >= before + 1.0 - 1e-9
    # five let through at 2 per second, then a refusal: the pace is set from those
    for _ in range(5):
        gov.on_success(sent_at=await gov.acquire())
        clock.now += 0.5
    gov.on_rate_limited(1.0, sent_at=await gov.acquire())
    assert gov.lowered == 1 and gov.learned_rate == pytest.approx(0.97 * 2.0, rel=0.01)


@pytest.mark.anyio
async def test_scattered_429s_only_pause(clock: FakeClock) -> None:
    """4 % random 429s (no limit behind them) pause the pipeline but never pace it."""
    gov = RateGovernor()
    draws = iter(range(10**9))

    def flaky() -> float | None:
        return 0.002 if next(draws) % 25 == 7 else None

    log = await drive(gov, clock, 60.0, demand=100.0, admit=flaky)
    assert gov.learned_rate is None and gov.lowered == 0
    assert gov.rate_limited >= 200
    assert admitted_rate(log, log[0][0]) >= 0.9 * 96  # the short pauses cost a little


@pytest.mark.anyio
async def test_heavy_random_429s_are_recognised_as_noise(clock: FakeClock) -> None:
    """20 % random 429s look like a limit at first; lowering leaves the refused share where it
    was, so the governor calls them noise, drops the pace and from then on only pauses."""
    gov = RateGovernor()
    draws = iter(range(10**9))

    def flaky() -> float | None:
        return 0.001 if next(draws) % 5 == 0 else None

    log = await drive(gov, clock, 120.0, demand=100.0, admit=flaky)
    assert gov.lowered >= 1  # it did suspect a limit
    assert 0.2 < gov.noise < 0.5
    assert gov.learned_rate is None or gov.learned_rate >= 70.0  # back to (about) unpaced
    assert admitted_rate(log, log[0][0] + 30.0) >= 0.9 * 80


@pytest.mark.anyio
async def test_a_limit_behind_noise_is_still_learned(clock: FakeClock) -> None:
    """A 10/s bucket plus 5 % random 429s: the pace still settles under the limit.

    (Noise makes the measurement err low and makes probes fail, so it settles lower than
    without noise: over 80 % of the limit, never above it.)"""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    draws = iter(range(10**9))

    def both() -> float | None:
        if next(draws) % 20 == 3:
            return 0.001
        return server.take()

    gov = RateGovernor()
    log = await drive(gov, clock, 200.0, demand=50.0, admit=both)
    assert gov.learned_rate is not None and 8.0 <= gov.learned_rate <= 10.2
    assert admitted_rate(log, log[0][0] + 60.0) >= 8.0


@pytest.mark.anyio
async def test_a_failed_probe_reverts_and_probes_less_often(clock: FakeClock) -> None:
    """A probe above the limit draws one 429, reverts to the settled pace, doubles the wait."""
    server = Bucket(clock, rate=10.0, capacity=2.0)
    gov = RateGovernor(probe_seconds=5.0, verify_seconds=2.0)
    await drive(gov, clock, 400.0, demand=40.0, admit=server.take)
    assert gov.probes >= 2 and gov.probes_failed >= 1
    assert gov.learned_rate is not None and gov.learned_rate <= 10.5
    # doubling: far fewer failed probes than the ~80 intervals of 5 s would allow
    assert gov.probes_failed <= 8


@pytest.mark.anyio
async def test_a_tightened_limit_is_followed_down(clock: FakeClock) -> None:
    """Another process takes half the key's limit: the pace follows it down."""
    server = Bucket(clock, rate=20.0, capacity=20.0)
    gov = RateGovernor()
    await drive(gov, clock, 60.0, demand=50.0, admit=server.take)
    assert gov.learned_rate is not None and gov.learned_rate > 18.0
    server.rate = 10.0
    later = clock.now
    log = await drive(gov, clock, 60.0, demand=50.0, admit=server.take)
    assert gov.learned_rate <= 10.5
    assert admitted_rate(log, later + 20.0) >= 9.0


@pytest.mark.anyio
async def test_holding_says_whether_requests_wait(clock: FakeClock) -> None:
    """``holding`` is true right after a request had to wait for the pace."""
    gov = RateGovernor(2)
    seen = [gov.holding]
    for _ in range(4):
        await gov.acquire()
    seen.append(gov.holding)
    clock.now += 10.0
    seen.append(gov.holding)
    assert seen == [False, True, False]


@pytest.mark.anyio
async def test_a_first_429_without_history_only_pauses(clock: FakeClock) -> None:
    """A 429 before any success makes the refused request wait, pauses no other and invents
    no rate; a later one learns from successes."""
    gov = RateGovernor()
    gov.on_rate_limited(0.5)
    assert gov.learned_rate is None
    assert gov.paused_seconds == 0.0 and gov.own_waits == 1
    start = clock.now
    await gov.acquire()  # the refused request's retry (same task): waits its 0.5 s
    assert clock.now == pytest.approx(start + 0.5)
    clock.now += 1.0
    for _ in range(20):
        clock.now += 0.06  # over 1 s: min_measured_seconds
        gov.on_success(sent_at=await gov.acquire())
    for _ in range(12):  # a limit: the refusals keep coming (a third of 32 answers)
        gov.on_rate_limited(0.0, sent_at=await gov.acquire())
    learned: float | None = gov.learned_rate
    assert learned is not None
    assert learned > 1.0


@pytest.mark.anyio
async def test_no_waiting_mode_clears_pauses() -> None:
    """With the testing switch on, a pause does not block."""
    previous = _timing.set_no_waiting(True)
    try:
        gov = RateGovernor()
        gov.on_rate_limited(1000.0)
        with anyio.fail_after(5):
            for _ in range(5):
                await gov.acquire()
    finally:
        _timing.set_no_waiting(previous)


def test_invalid_settings_are_rejected() -> None:
    """A non-positive rate or window raises ValueError."""
    with pytest.raises(ValueError, match="requests_per_second"):
        RateGovernor(0)
    with pytest.raises(ValueError, match="floor"):
        RateGovernor(floor=0)
    with pytest.raises(ValueError, match="headroom"):
        RateGovernor(headroom=1.5)
    with pytest.raises(ValueError, match="probe_seconds"):
        RateGovernor(probe_seconds=0)


@pytest.mark.anyio
async def test_random_429s_at_a_low_request_rate_do_not_ratchet_the_pace(
    clock: FakeClock,
) -> None:
    """A pace learned from a real limit, then few requests and 5 % random 429s (the 10,000-job
    fault benchmark once the creates were done): the pace must not follow them down.

    At a settled pace a few 429s used to lower it whatever their share; at 3 requests/s the
    verifying epochs were too short to recognise noise, and the pace fell to 0.5/s while the
    batch needed 3/s: detections came an hour late."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    await drive(gov, clock, 60.0, demand=50.0, admit=server.take)
    assert gov.learned_rate is not None and gov.state in ("settled", "probing")
    draws = iter(range(10**9))

    def flaky() -> float | None:
        return 0.5 if next(draws) % 20 == 3 else None

    later = clock.now
    log = await drive(gov, clock, 1200.0, demand=3.0, admit=flaky)
    assert gov.learned_rate is None or gov.learned_rate >= 3.0
    assert admitted_rate(log, later + 60.0) >= 0.85 * 3.0


# ---------------------------------------------------------------------- the parts


def test_the_tuning_names_every_threshold_and_is_frozen() -> None:
    """Thresholds are fields of one frozen object; keyword overrides and ``tuning=`` agree."""
    tuning = GovernorTuning()
    assert tuning.headroom == 0.97 and tuning.min_evidence == 3 and tuning.probe_step == 0.04
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuning.headroom = 0.5  # type: ignore[misc]
    by_keyword = RateGovernor(headroom=0.9, probe_seconds=5.0)
    by_object = RateGovernor(tuning=GovernorTuning(headroom=0.9, probe_seconds=5.0))
    assert by_keyword.tuning == by_object.tuning
    assert by_keyword.tuning.headroom == 0.9 and by_keyword.tuning.verify_seconds == 10.0
    over = RateGovernor(tuning=GovernorTuning(headroom=0.9), headroom=0.8)
    assert over.tuning.headroom == 0.8  # a keyword overrides the object
    with pytest.raises(ValueError, match="min_evidence"):
        GovernorTuning(min_evidence=0)


@pytest.mark.anyio
async def test_the_state_is_an_enum_equal_to_its_old_string(clock: FakeClock) -> None:
    """``state`` is a ``PaceState``; it still compares equal to the strings it used to be."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    assert gov.state == "unpaced" and isinstance(gov.state, PaceState)
    await drive(gov, clock, 30.0, demand=50.0, admit=server.take)
    assert gov.learned_rate is not None
    assert gov.state in (PaceState.VERIFYING, PaceState.SETTLED, PaceState.PROBING)
    assert {s.value for s in PaceState} == {"unpaced", "verifying", "settled", "probing"}


def test_the_token_bucket_refills_up_to_its_capacity() -> None:
    """Tokens accrue at the rate, up to the capacity; none accrue before a pause ends."""
    bucket = TokenBucket(2.0, now=0.0)
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait(rate=4.0) == pytest.approx(0.25)
    bucket.refill(10.0, rate=4.0, capacity=3.0)
    assert bucket.tokens == 3.0
    bucket.clamp()
    assert bucket.tokens == 1.0
    bucket.frozen_until(20.0)
    bucket.refill(15.0, rate=4.0, capacity=3.0)  # still paused: nothing accrues
    assert bucket.tokens == 1.0


def test_the_pause_extends_and_decides_once_per_burst() -> None:
    """A 429 pauses until ``now + delay`` (never shortening it); 429s of requests sent before
    the reaction are the same burst."""
    pause = RateLimitPause()
    pause.refused(10.0, 2.0)
    pause.refused(10.5, 0.5)  # ends before the pause: no extension
    assert pause.until == 12.0 and pause.paused_seconds == pytest.approx(2.0)
    assert pause.new_burst(10.0, sent_at=9.0)
    assert not pause.new_burst(10.5, sent_at=9.5)  # sent before the reaction
    assert pause.new_burst(13.0, sent_at=12.5)
    assert pause.bursts == 2 and pause.rate_limited == 2
    assert pause.rate_limited_after_reaction == 1


def test_significance_needs_a_share_clearly_above_the_tolerance() -> None:
    """3 of 30 refused is a fluke at 10 % tolerance; 45 of 300 is a limit; 60 % always is."""
    t = GovernorTuning()
    assert not is_significant(3 / 30, 30, 0.1, t)
    assert not is_significant(30 / 300, 300, 0.1, t)
    assert is_significant(45 / 300, 300, 0.1, t)
    assert is_significant(0.6, 3, 0.1, t)
    assert not is_significant(1.0, 0, 0.1, t)


def test_the_noise_test_needs_unchanged_shares_over_spread_paces() -> None:
    """Three epochs refusing about the same share at paces 20 % apart are noise; a share
    that falls with the pace (a real limit), or paces too close together, are not."""
    t = GovernorTuning()
    noise = [(None, 0.2, 100), (80.0, 0.21, 100), (70.0, 0.19, 100)]
    assert noise_run(noise, t) == list(reversed(noise))
    limit = [(None, 0.5, 100), (80.0, 0.2, 100), (70.0, 0.05, 100)]
    assert noise_run(limit, t) is None
    close = [(72.0, 0.2, 100), (71.0, 0.21, 100), (70.0, 0.19, 100)]
    assert noise_run(close, t) is None
    thin = [(None, 0.2, 100), (80.0, 0.2, 5), (70.0, 0.2, 100)]
    assert noise_run(thin, t) is None  # an epoch with too few answers breaks the run


@pytest.mark.anyio
async def test_a_scattered_429_holds_only_the_refused_request(clock: FakeClock) -> None:
    """A lone 429 among successes: the refused request's retry waits its Retry-After, while
    another task's request goes at once; the pipeline is never paused."""
    gov = RateGovernor()
    for _ in range(30):
        clock.now += 0.05
        gov.on_success(sent_at=await gov.acquire())
    waited: dict[str, float] = {}
    refused_now, other_done = anyio.Event(), anyio.Event()

    async def refused() -> None:
        sent = await gov.acquire()
        gov.on_rate_limited(2.0, sent_at=sent)
        refused_now.set()
        await other_done.wait()
        before = clock.now
        waited["retry"] = await gov.acquire() - before

    async def other() -> None:
        await refused_now.wait()
        before = clock.now
        waited["other"] = await gov.acquire() - before
        other_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(refused)
        tg.start_soon(other)
    assert waited["other"] == 0.0  # not held by the other task's 429
    assert waited["retry"] == pytest.approx(2.0)  # the refused one waited its own 2 s
    assert gov.paused_seconds == 0.0 and gov.own_waits == 1
    assert gov.own_wait_seconds == pytest.approx(2.0)


@pytest.mark.anyio
async def test_429s_that_show_a_limit_pause_every_request(clock: FakeClock) -> None:
    """A share of 429s clearly above the noise (a real limit) pauses the whole pipeline, as
    before: every request waits, not only the refused ones."""
    gov = RateGovernor()
    sent = [await gov.acquire() for _ in range(12)]
    for s in sent[:4]:
        gov.on_success(sent_at=s)
    for s in sent[4:]:
        gov.on_rate_limited(1.0, sent_at=s)
    assert gov.paused_seconds > 0.0
    start = clock.now
    await gov.acquire()  # a request of a task that saw no 429
    assert clock.now >= start + 0.9


@pytest.mark.anyio
async def test_a_pace_never_pressed_stays_being_verified(clock: FakeClock) -> None:
    """A pace learned in a first burst is settled only once requests went at half of it or
    more: while the batch asks for less it stays being verified (a 429 then measures the
    limit again), and settles once it is pressed for ``verify_seconds``."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    await drive(gov, clock, 3.0, demand=50.0, admit=server.take)
    assert gov.learned_rate is not None and gov.state is PaceState.VERIFYING
    await drive(gov, clock, 30.0, demand=2.0, admit=server.take)  # far below the pace
    assert gov.state is PaceState.VERIFYING
    await drive(gov, clock, 30.0, demand=50.0, admit=server.take)  # pressed: verified
    assert gov.state.value == PaceState.SETTLED.value  # (read again: mypy narrowed it)


# ---------------------------------------------------------------------- issue 16: bursty demand


async def drive_phases(
    gov: RateGovernor,
    clock: FakeClock,
    phases: list[tuple[float, float]],
    admit: Callable[[], float | None],
) -> list[tuple[float, bool]]:
    """Offer each phase's demand (requests/s) for its seconds, one after the other."""
    log: list[tuple[float, bool]] = []
    for seconds, demand in phases:
        log += await drive(gov, clock, seconds, demand=demand, admit=admit)
    return log


def waves(cycles: int) -> list[tuple[float, float]]:
    """A batch's demand: a wave of polls and creates above the limit, then a quiet spell."""
    return [(10.0, 15.0), (35.0, 2.0)] * cycles


@pytest.mark.anyio
async def test_a_quiet_spell_does_not_measure_the_limit_low(clock: FakeClock) -> None:
    """A pace set in a first burst, left unpressed for a quiet spell, then pressed again: the
    limit is measured while pressing, not averaged over the quiet spell (which had put the
    pace at a third of the limit, and every later poll waited)."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    await drive_phases(gov, clock, [(1.5, 30.0), (40.0, 1.0)], server.take)
    assert gov.learned_rate is not None
    later = clock.now
    log = await drive(gov, clock, 40.0, demand=30.0, admit=server.take)
    assert gov.learned_rate >= 8.5
    assert admitted_rate(log, later + 10.0) >= 8.5


@pytest.mark.anyio
async def test_after_the_first_burst_a_wavy_batch_draws_no_429(clock: FakeClock) -> None:
    """Waves above a 10/s limit with quiet spells between them (the shape of a batch): the
    first wave teaches the limit (measured without the server's burst allowance), and no
    later wave draws a 429 (no probe above it while only short waves are held back)."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    start = clock.now
    log = await drive_phases(gov, clock, waves(8), server.take)
    first_429 = min(t for t, ok in log if not ok)
    late = [t for t, ok in log if not ok and t > first_429 + 10.0]
    assert late == []
    assert gov.learned_rate is not None and 8.5 <= gov.learned_rate <= 10.0
    assert gov.probes == 0
    # each wave still gets nearly the limit: 10 s of 15/s asked, about 10/s let through
    for k in range(1, 8):
        wave = [t for t, ok in log if ok and start + 45.0 * k <= t < start + 45.0 * k + 10.0]
        assert len(wave) >= 85


@pytest.mark.anyio
async def test_a_batch_held_back_all_the_time_still_probes(clock: FakeClock) -> None:
    """Demand always above the pace: probing goes on, and a limit that grew is found once the
    memory of the measured one (600 s) lapses: not above it before."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    start = clock.now
    await drive(gov, clock, 120.0, demand=30.0, admit=server.take)
    settled = gov.learned_rate
    assert settled is not None
    server.rate = 20.0
    await drive(gov, clock, 450.0, demand=30.0, admit=server.take)
    assert gov.learned_rate is not None and gov.learned_rate <= 10.0  # below the old limit
    await drive(gov, clock, 630.0, demand=30.0, admit=server.take)
    grown = gov.learned_rate
    assert clock.now - start <= 1210.0
    assert gov.probes >= 3 and grown is not None and grown > 1.2 * settled


@pytest.mark.anyio
async def test_a_wave_after_a_quiet_spell_teaches_the_limit(clock: FakeClock) -> None:
    """Quiet spells first, then waves at 15/s against a 10/s limit: each wave's 429s are a
    small share of the counted windows (mostly quiet), but a large one of the wave: the first
    wave teaches the limit and no later wave draws a 429."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    log = await drive_phases(gov, clock, [(40.0, 2.0), (12.0, 15.0)] * 6, server.take)
    first_429 = min(t for t, ok in log if not ok)
    assert [t for t, ok in log if not ok and t > first_429 + 10.0] == []
    assert gov.learned_rate is not None and 8.0 <= gov.learned_rate <= 10.0


# ---------------------------------------------------------------------- issue 16: a pace too high


def settled_at(gov: RateGovernor, rate: float) -> None:
    """Put ``gov`` at a settled pace of ``rate`` (as a first burst measured too high would)."""
    assert gov._learner.adopt(rate, _timing.monotonic())
    assert gov.state is PaceState.SETTLED and gov.learned_rate == rate


@pytest.mark.anyio
@pytest.mark.parametrize("probe_step", [0.0, 0.04])
async def test_a_settled_pace_above_the_limit_is_corrected_by_its_first_429(
    clock: FakeClock, probe_step: float
) -> None:
    """A settled pace 9 % above a 10/s token bucket, pressed for 10 minutes: the first 429
    (once the server's burst allowance drained) lowers it below the limit; no other 429
    follows but one per failed probe (none without probing), each back below the 429'd pace."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor(probe_step=probe_step)
    settled_at(gov, 10.9)
    with anyio.fail_after(60):
        log = await drive(gov, clock, 600.0, demand=30.0, admit=server.take)
    refused = [t for t, ok in log if not ok]
    assert len(refused) == 1 + gov.probes_failed
    assert gov.probes_failed <= 4  # probes back off: 15, 30, 60, 120 ... s apart
    assert gov.learned_rate is not None and gov.learned_rate <= 10.0
    assert admitted_rate(log, refused[0] + 10.0) >= 9.0  # still close to the limit
    if probe_step == 0.0:
        assert gov.probes == 0 and len(refused) == 1


@pytest.mark.anyio
async def test_random_429s_while_not_pressing_do_not_lower_a_settled_pace(
    clock: FakeClock,
) -> None:
    """A settled pace of 10/s, a batch asking for 4/s (never held back) and 10 % random 429s:
    each only makes the refused request wait; the pace is not lowered."""
    gov = RateGovernor()
    settled_at(gov, 10.0)
    draws = iter(range(10**9))

    def flaky() -> float | None:
        return 0.5 if next(draws) % 10 == 3 else None

    with anyio.fail_after(60):
        log = await drive(gov, clock, 600.0, demand=4.0, admit=flaky)
    assert gov.rate_limited >= 200  # every tenth of ~2,400 requests
    assert gov.lowered == 0 and gov.learned_rate is not None and gov.learned_rate >= 10.0
    assert gov.own_waits == gov.rate_limited and gov.paused_seconds == 0.0
    assert admitted_rate(log, log[0][0]) >= 0.75 * 4.0  # 10 % refused, each retried 0.5 s later


@pytest.mark.anyio
async def test_a_wavy_batch_at_a_settled_pace_above_the_limit_draws_one_429(
    clock: FakeClock,
) -> None:
    """The 1,000-job benchmark's case: a settled pace of 11.25/s (12.5 % above a 10/s bucket),
    waves of 15/s for 10 s between quiet spells: the first wave to drain the server's burst
    allowance draws one 429, which lowers the pace; no later wave draws one (it used to take
    three 429s in a row, or one per long wave, before the pace came down)."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    settled_at(gov, 11.25)
    with anyio.fail_after(60):
        log = await drive_phases(gov, clock, waves(14), server.take)
    assert len([t for t, ok in log if not ok]) == 1
    assert gov.lowered == 1 and gov.learned_rate is not None and gov.learned_rate <= 10.2


# ---------------------------------------------------------------------- issue 16: probes over hours


@pytest.mark.anyio
async def test_pressed_for_9000_s_a_fixed_limit_costs_a_429_per_doubling(clock: FakeClock) -> None:
    """A 10/s token bucket (burst 10) pressed at 30/s for 9,000 s (the 10,000-job run's length):
    after the first burst only failed probes draw a 429, one per doubling of the memory of the
    limit (600, 1,200, 2,400 s ...): 3, not the 26 of a probe that stood above the limit and
    was made again every 6 minutes. The pace stays under the limit and within 3 % of it."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    with anyio.fail_after(120):
        log = await drive(gov, clock, 9000.0, demand=30.0, admit=server.take)
    refused = [t for t, ok in log if not ok]
    late = [t for t in refused if t > refused[0] + 10.0]
    assert len(late) == gov.probes_failed <= 3
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert all(later >= 1.8 * earlier for earlier, later in itertools.pairwise(gaps))
    assert late[0] - refused[0] >= 600.0  # nothing above the measured limit for 10 minutes
    assert gov.learned_rate is not None and 9.7 <= gov.learned_rate <= 10.0
    assert admitted_rate(log, refused[0] + 10.0) >= 9.6


@pytest.mark.anyio
async def test_no_probe_above_a_remembered_ceiling(clock: FakeClock) -> None:
    """A failed probe caps later probes at the pace that held until the memory lapses; a
    measured limit caps them at 0.99 x it; ``ceiling_memory_intervals=inf`` never probes above."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor(tuning=GovernorTuning(ceiling_memory_intervals=math.inf))
    with anyio.fail_after(60):
        log = await drive(gov, clock, 3000.0, demand=30.0, admit=server.take)
    refused = [t for t, ok in log if not ok]
    assert [t for t in refused if t > refused[0] + 10.0] == []
    cap = gov._learner.probe_cap(clock.now)
    assert cap is not None and cap <= 10.0
    assert gov.learned_rate is not None and gov.learned_rate <= cap + 1e-9
    assert gov.probes_failed == 0


@pytest.mark.anyio
async def test_long_waves_for_9000_s_draw_no_429_after_the_first_burst(clock: FakeClock) -> None:
    """A batch whose waves hold every request back for 20 s (longer than ``probe_seconds``),
    then go quiet, for 9,000 s against a 10/s bucket: a probe at the end of a wave (the
    server's burst allowance spent) above the limit would draw a 429 at once, as at 98 s of a
    1,000-job run; probes stay under the measured limit, and above it only for a backlog."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    with anyio.fail_after(120):
        log = await drive_phases(gov, clock, [(20.0, 15.0), (25.0, 2.0)] * 200, server.take)
    refused = [t for t, ok in log if not ok]
    assert [t for t in refused if t > refused[0] + 10.0] == []
    assert gov.learned_rate is not None and 9.0 <= gov.learned_rate <= 10.0


@pytest.mark.anyio
async def test_a_first_pace_above_the_limit_never_pressed_is_cut_by_the_first_wave(
    clock: FakeClock,
) -> None:
    """A first burst's pace 5 % above a 10/s bucket, still being verified because the batch
    then asked for less (2/s for 40 s), then waves of 15/s for 25 s: the first 429 of the first wave
    is the pace's own (it holds requests back): it cuts the pace below the limit, and no
    other 429 follows (three in a row used to, a few seconds apart)."""
    server = Bucket(clock, rate=10.0, capacity=10.0)
    gov = RateGovernor()
    gov._learner._set_pace(10.5, PaceState.VERIFYING, _timing.monotonic())
    with anyio.fail_after(60):
        await drive(gov, clock, 40.0, demand=2.0, admit=server.take)
        assert gov.state is PaceState.VERIFYING  # never pressed
        log = await drive_phases(gov, clock, [(25.0, 15.0), (35.0, 2.0)] * 8, server.take)
    assert len([t for t, ok in log if not ok]) == 1
    assert gov.lowered == 1 and gov.learned_rate is not None and gov.learned_rate <= 10.0


def test_a_batch_of_releases_at_the_end_of_a_pause_is_not_counted_in_the_rate() -> None:
    """The end of a pause releases every request it held at once; the server lets a few of
    them through on tokens it saved before. Those do not measure its rate: 4 let through at
    the first release time, then one every 0.1 s for 1 s, is 10/s (``ok - 1`` over the span
    said 13/s, the first burst's pace above a 10/s limit, issue 16)."""
    press = Press(batch_seconds=0.003)
    press.begin(0.0)
    for k in range(4):
        press.admitted(0.05, sent_at=1.0 + k * 0.0005)  # one batch (within 3 ms)
    for k in range(1, 11):
        press.admitted(1.0 + k * 0.1, sent_at=1.0 + k * 0.1)
    assert press.enough(5) and press.first_n == 4
    assert press.rate() == pytest.approx(10.0)
    single = Press()  # no batching: every release on its own, as before
    single.begin(0.0)
    for k in range(11):
        single.admitted(1.0 + k * 0.1, sent_at=1.0 + k * 0.1)
    assert single.rate() == pytest.approx(10.0)
    only_batch = Press(batch_seconds=0.003)
    only_batch.begin(0.0)
    for k in range(6):
        only_batch.admitted(1.0, sent_at=1.0 + k * 0.0001)
    assert not only_batch.enough(5)  # nothing after the first batch: no rate yet
