"""The rate governor on a fake clock: pause on 429, learned pacing, one reaction per burst."""

from __future__ import annotations

import anyio
import pytest

from veo_async import _timing
from veo_async._ratelimit import RateGovernor


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


@pytest.mark.anyio
async def test_a_429_pauses_everyone_then_paces(clock: FakeClock) -> None:
    """After a 429 every request waits out the pause, then goes at 0.9 x the success rate."""
    gov = RateGovernor(window=4.0)
    for _ in range(40):  # 40 successes over 4 s: 10/s
        sent = await gov.acquire()
        gov.on_success(sent_at=sent)
        clock.now += 0.1
    gov.on_rate_limited(2.0, sent_at=clock.now - 0.05)
    assert gov.learned_rate == pytest.approx(9.0, rel=0.05)
    assert gov.burst == 1.0
    before = clock.now
    await gov.acquire()
    assert clock.now >= before + 2.0
    t0 = clock.now
    for _ in range(9):
        await gov.acquire()
    assert clock.now - t0 == pytest.approx(1.0, rel=0.1)  # paced, not a burst of 9


@pytest.mark.anyio
async def test_one_reaction_per_burst(clock: FakeClock) -> None:
    """429s of requests sent before the reaction do not lower the rate again."""
    gov = RateGovernor()
    sent = [await gov.acquire() for _ in range(10)]
    for s in sent:
        gov.on_success(sent_at=s)
    clock.now += 0.5
    gov.on_rate_limited(1.0, sent_at=sent[0])
    rate = gov.learned_rate
    for s in sent[1:]:
        gov.on_rate_limited(1.0, sent_at=s)
    assert gov.learned_rate == rate
    assert gov.bursts == 1 and gov.rate_limited == 10
    assert gov.rate_limited_after_reaction == 0
    later = await gov.acquire()
    gov.on_rate_limited(1.0, sent_at=later)
    assert gov.bursts == 2 and gov.rate_limited_after_reaction == 1
    assert gov.learned_rate is not None and rate is not None and gov.learned_rate < rate


@pytest.mark.anyio
async def test_the_learned_rate_recovers_only_while_it_holds_requests_back(
    clock: FakeClock,
) -> None:
    """Successes raise the learned rate when requests queue for tokens, slowly near the ceiling."""
    gov = RateGovernor(recovery=0.1, slow_recovery=0.01)
    for _ in range(20):
        gov.on_success(sent_at=await gov.acquire())
        clock.now += 0.2
    gov.on_rate_limited(0.0, sent_at=clock.now)
    learned = gov.learned_rate
    assert learned is not None
    for _ in range(50):  # back to back: every acquire waits for a token
        gov.on_success(sent_at=await gov.acquire())
    assert gov.learned_rate is not None and gov.learned_rate > learned
    grown = gov.learned_rate
    clock.now += 100.0  # idle: nothing held back, no growth
    gov.on_success(sent_at=await gov.acquire())
    gov.on_success(sent_at=clock.now)
    assert gov.learned_rate == pytest.approx(grown, rel=0.2)


@pytest.mark.anyio
async def test_a_first_429_without_history_only_pauses(clock: FakeClock) -> None:
    """A 429 before any success pauses but invents no rate; a later one learns from successes."""
    gov = RateGovernor()
    gov.on_rate_limited(0.5)
    assert gov.learned_rate is None
    assert gov.paused_seconds == pytest.approx(0.5)
    clock.now += 1.0
    for _ in range(20):
        clock.now += 0.05
        gov.on_success(sent_at=await gov.acquire())
    gov.on_rate_limited(0.5, sent_at=clock.now)
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
    with pytest.raises(ValueError, match="window"):
        RateGovernor(window=0)
