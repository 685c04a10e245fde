"""The poll policy and queue model: pure decisions, tested without clock or network."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veo_async import FixedIntervalPolicy, PollPolicy
from veo_async.polling import QueueModel, schedule_cost


def veo2_durations(n: int, seed: int = 0) -> list[float]:
    """Durations like the emulator's Veo2 5 s clips: 1 s queue + 45 s x exp(0.075 z)."""
    rng = random.Random(seed)
    return [1.0 + 45.0 * math.exp(0.075 * max(-3, min(3, rng.gauss(0, 1)))) for _ in range(n)]


def simulate(
    policy: PollPolicy, durations: list[float], prior: float = 45.0
) -> tuple[float, float]:
    """Mean polls and mean detection delay of ``policy`` over jobs of these durations."""
    polls = delay = 0.0
    for d in durations:
        t = policy.first_delay(prior)
        n = 1
        while t < d:
            t += policy.next_delay(t, prior, n)
            n += 1
        polls += n
        delay += t - d
    return polls / len(durations), delay / len(durations)


def test_before_learning_the_prior_schedule_is_used() -> None:
    """With no observations the first poll is at 0.9 x expected, then every ``interval``."""
    policy = PollPolicy()
    assert policy.first_delay(45) == pytest.approx(40.5)
    assert policy.next_delay(0, 45, 0) == pytest.approx(40.5)
    assert policy.next_delay(41, 45, 1) == pytest.approx(3.0)
    assert policy.expected(45) == 45


def test_learned_schedule_beats_fixed_polling_on_both_axes() -> None:
    """After learning, fewer requests AND lower delay than fixed 10 s; meets 3.5 req / 3 s."""
    policy = PollPolicy()
    for d in veo2_durations(300, seed=1):
        policy.observe(d, 45)
    fresh = veo2_durations(2000, seed=2)
    polls, delay = simulate(policy, fresh)
    fixed_polls, fixed_delay = simulate(FixedIntervalPolicy(interval=10), fresh)
    assert polls < fixed_polls and delay < fixed_delay
    assert polls <= 3.5 and delay <= 3.0
    assert fixed_polls > 4.5 and fixed_delay > 4.0


def test_the_fit_tracks_a_slower_service() -> None:
    """If jobs take twice the prior, the fitted first poll moves out to match."""
    policy = PollPolicy()
    for d in veo2_durations(100):
        policy.observe(2 * d, 45)
    assert 80 < policy.first_delay(45) < 100
    assert policy.expected(45) == pytest.approx(2 * 46, rel=0.05)


def test_a_wider_spread_gets_longer_steps() -> None:
    """A wide duration spread makes polls sparser than a tight one (requests vs delay)."""
    tight, wide = PollPolicy(), PollPolicy()
    rng = random.Random(4)
    for _ in range(200):
        tight.observe(45 + rng.uniform(-2, 2), 45)
        wide.observe(45 + rng.uniform(-25, 25), 45)
    assert wide.step(45) > tight.step(45)


def test_delay_weight_trades_requests_for_delay() -> None:
    """A higher delay_weight gives lower delay and more requests."""
    cheap, eager = PollPolicy(delay_weight=0.2), PollPolicy(delay_weight=5.0)
    for d in veo2_durations(200):
        cheap.observe(d, 45)
        eager.observe(d, 45)
    fresh = veo2_durations(1000, seed=9)
    (cp, cd), (ep, ed) = simulate(cheap, fresh), simulate(eager, fresh)
    assert ep > cp and ed < cd


def test_the_tail_backs_off_up_to_max_interval() -> None:
    """Beyond the observed durations the step grows, but never past ``max_interval``."""
    policy = PollPolicy(max_interval=20)
    for d in veo2_durations(50):
        policy.observe(d, 45)
    step = policy.step(45)
    assert policy.next_delay(80, 45, 5) > step
    assert policy.next_delay(10_000, 45, 50) == 20


def test_observe_ignores_nonsense_and_keeps_a_window() -> None:
    """Non-finite or non-positive samples are dropped; only ``window`` samples are kept."""
    policy = PollPolicy(window=10)
    for bad in (math.nan, math.inf, -1.0, 0.0):
        policy.observe(bad, 45)
    policy.observe(40, 0)
    assert policy.observations == 0
    for _ in range(30):
        policy.observe(40, 45)
    assert policy.observations == 30
    assert len(policy._samples) == 10


def test_learning_can_be_turned_off() -> None:
    """With ``learn=False`` observations change nothing."""
    policy = PollPolicy(learn=False)
    for d in veo2_durations(50):
        policy.observe(2 * d, 45)
    assert policy.first_delay(45) == pytest.approx(40.5)


def test_time_scale_scales_every_duration() -> None:
    """At time_scale 0.01 every delay is 100 times shorter, learning included."""
    real, fast = PollPolicy(), PollPolicy(time_scale=0.01)
    for d in veo2_durations(40):
        real.observe(d, 45)
        fast.observe(d * 0.01, 45)
    assert fast.first_delay(45) == pytest.approx(real.first_delay(45) * 0.01)
    assert fast.next_delay(0.44, 45, 1) == pytest.approx(real.next_delay(44, 45, 1) * 0.01)
    assert FixedIntervalPolicy(time_scale=0.01).next_delay(5, 45, 1) == pytest.approx(0.1)


def test_fixed_interval_policy_is_constant() -> None:
    """The baseline polls every ``interval`` and does not queue-model or learn."""
    fixed = FixedIntervalPolicy(interval=10)
    assert fixed.first_delay(45) == fixed.next_delay(100, 45, 3) == fixed.after_queued(45) == 10
    assert not fixed.queue_aware and not fixed.learn


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval": 0},
        {"min_interval": 5, "max_interval": 1},
        {"interval": 0},
        {"backoff": 0.5},
        {"delay_weight": -1},
        {"time_scale": 0},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    """Settings that cannot work raise ValueError."""
    with pytest.raises(ValueError):
        PollPolicy(**kwargs)


def test_schedule_cost_counts_polls_and_delay() -> None:
    """The cost model: first poll at 1.0, step 0.1 (units of a 10 s prior)."""
    polls, delay = schedule_cost([0.5, 1.05, 1.2], 1.0, 0.1, 10.0, 1.0)
    assert polls == pytest.approx((1 + 2 + 3) / 3)
    assert delay == pytest.approx((5 + 0.5 + 0.0) / 3)
    assert schedule_cost([], 1, 1, 1, 1) == (0.0, 0.0)


@given(
    elapsed=st.floats(0, 1e6),
    prior=st.floats(0.5, 1000),
    samples=st.lists(st.floats(1, 500), max_size=40),
)
def test_delays_stay_within_bounds(elapsed: float, prior: float, samples: list[float]) -> None:
    """Whatever was observed, every delay is within [min_interval, the first-poll offset]."""
    policy = PollPolicy()
    for s in samples:
        policy.observe(s, prior)
    delay = policy.next_delay(elapsed, prior, 1)
    assert policy.min_interval <= delay
    assert delay <= max(policy.first_delay(prior), policy.max_interval)
    assert math.isfinite(policy.first_delay(prior))


def test_queue_model_is_inert_until_saturation() -> None:
    """Without a job seen queued past the grace, nothing waits on a predecessor."""
    model = QueueModel(grace=10)
    model.saw_started(5)
    model.saw_queued(6, waited=3)
    assert not model.saturated and model.predecessor(100) is None


def test_queue_model_estimates_concurrency_fifo() -> None:
    """Seen 50 started and #50 queued late: C = 50, and rank s waits for rank s - 50."""
    model = QueueModel(grace=10)
    for rank in range(50):
        model.saw_started(rank)
    model.saw_queued(50, waited=40)
    assert model.saturated and model.concurrency == 50
    assert model.predecessor(50) == 0 and model.predecessor(120) == 70
    assert model.predecessor(10) is None
    for _ in range(20):
        model.finished()
    model.saw_started(69)  # 70 started, 20 finished: still 50
    assert model.concurrency == 50
    model.saw_started(75)  # a larger estimate wins (over-estimating costs a poll, not delay)
    assert model.concurrency == 56


def test_queue_model_takes_the_upper_bound_a_queued_job_gives() -> None:
    """Only 10 seen started, but #300 is queued with 100 finished: C <= 200 is used, so jobs
    are polled early rather than late."""
    model = QueueModel(grace=1)
    for rank in range(10):
        model.saw_started(rank)
    for _ in range(100):
        model.finished()
    model.saw_queued(300, waited=5)
    assert model.saturated and model.concurrency == 200
    assert model.predecessor(450) == 250


def test_queue_model_without_any_started_job_predicts_nothing() -> None:
    """Saturated but nothing seen started (another client holds the slots): no predecessor."""
    model = QueueModel(grace=1)
    model.saw_queued(0, waited=5)
    assert model.saturated and model.concurrency is None and model.predecessor(3) is None


def test_a_rate_bound_first_poll_waits_for_most_jobs_to_be_done() -> None:
    """Rate-bound, the first poll is at ``bound_quantile`` of the observed durations (or the
    expected duration before any): almost every job then needs a single status request; but
    at most ``tail_gap`` past the 10th percentile (issue 16: the early tenth were found up to
    12 s late)."""
    policy = PollPolicy(bound_quantile=0.9, tail_gap=20.0)
    assert policy.first_delay(45.0, rate_bound=True) == pytest.approx(45.0)
    assert policy.first_delay(45.0) == pytest.approx(0.9 * 45.0)
    for i in range(100):
        policy.observe(40.0 + 0.1 * i, 45.0)  # 40 .. 49.9 s
    bound = policy.first_delay(45.0, rate_bound=True)
    assert bound == pytest.approx(49.0, abs=0.2)
    assert policy.first_delay(45.0) < bound
    capped = PollPolicy(bound_quantile=0.9)  # tail_gap 5 s: 41 s (10th percentile) + 5 s
    for i in range(100):
        capped.observe(40.0 + 0.1 * i, 45.0)
    assert capped.first_delay(45.0, rate_bound=True) == pytest.approx(46.0, abs=0.2)
    with pytest.raises(ValueError, match="bound_quantile"):
        PollPolicy(bound_quantile=1.5)


def test_a_done_at_first_poll_is_an_upper_bound_not_a_duration() -> None:
    """Jobs found done at a late first poll do not teach the policy that jobs are slow.

    The feedback loop this guards against: a rate-bound batch polls first at the 90th
    percentile, finds nearly every job done, and (recording "just before the poll") learned
    ever longer durations; in a long server queue each wave was then predicted to start later
    than the one before, and detections came minutes late.
    """
    rng = random.Random(4)
    policy = PollPolicy()
    for _ in range(64):
        policy.observe(rng.uniform(42.0, 48.0), 45.0)
    for _ in range(2_000):
        first = policy.first_delay(45.0, rate_bound=True)
        duration = rng.uniform(42.0, 48.0)
        if duration <= first:
            policy.observe_at_most(first, 45.0)
        else:  # seen generating at the first poll, done at the next
            policy.observe(duration, 45.0)
    # (recording "just before the poll" gave a median of 46.9 s and no spread left below it)
    assert 44.0 < policy.expected(45.0) < 46.2
    learned = sorted(45.0 * x for x in policy._samples)
    assert learned[len(learned) // 10] < 43.5


def test_an_upper_bound_below_everything_learned_uses_the_fallback() -> None:
    """Nothing learned lies below the bound: the fallback (default the bound) is recorded."""
    policy = PollPolicy(min_samples=1)
    policy.observe(40.0, 45.0)
    policy.observe_at_most(20.0, 45.0, fallback_seconds=18.0)
    assert sorted(policy._samples) == [pytest.approx(18 / 45), pytest.approx(40 / 45)]
    policy.observe_at_most(30.0, 45.0)
    assert policy.observations == 3
    assert min(policy._samples) == pytest.approx(18 / 45)  # a sample below 30 s, reused
    policy.observe_at_most(10.0, 45.0)
    assert min(policy._samples) == pytest.approx(10 / 45)
    policy.observe_at_most(math.nan, 45.0)
    policy.observe_at_most(5.0, -1.0)
    assert policy.observations == 4
