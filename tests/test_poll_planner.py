"""The PollPlanner protocol and its planners: pure decisions, driven without clock or network."""

from __future__ import annotations

import importlib
import itertools
import math
import random
from typing import Any

import pytest

from veo_async import FixedIntervalPolicy, Generation, PollPolicy
from veo_async.polling import (
    BatchPlanner,
    FixedIntervalPlanner,
    JobTiming,
    PollJob,
    PollPlanner,
    QueueModel,
)

# the docs' example (examples/ is not a package, as in tests/integration/test_fastapi_app.py)
ServerHintPlanner: Any = importlib.import_module("examples.poll_planners").ServerHintPlanner


def reply(status: str, **extra: object) -> Generation:
    """A status reply as the API sends it (unknown fields kept)."""
    body: dict[str, object] = {"id": "g", "status": status, **extra}
    if status == "completed":
        body["video"] = {"url": "https://cdn.example/v.mp4"}
    return Generation.model_validate(body)


def drive(planner: PollPlanner, duration: float, prior: float = 45.0) -> tuple[int, float]:
    """Poll one job of ``duration`` seconds through the protocol: (polls, detection delay)."""
    job = JobTiming(0.0, prior)
    t = planner.first_poll(job, 0.0)
    while True:
        assert t > job.last_poll - 1e-9  # time never goes backwards
        job.polls += 1
        if t >= duration:
            planner.finished(job, reply("completed"), t)
            return job.polls, t - duration
        job.last_poll = t
        t = planner.next_poll(job, reply("generating"), t)


def test_every_planner_satisfies_the_protocol() -> None:
    """The adaptive policy, the fixed planner, the batch planner and the hint example all
    plan a job to its detection through the same four methods."""
    planners: list[PollPlanner] = [
        PollPolicy(),
        FixedIntervalPolicy(interval=10),
        FixedIntervalPlanner(interval=10),
        BatchPlanner[PollJob](PollPolicy()),
        ServerHintPlanner(PollPolicy()),
    ]
    for planner in planners:
        polls, delay = drive(planner, 46.0)
        assert 1 <= polls <= 10 and 0 <= delay <= 10.0


def test_the_policy_as_a_planner_keeps_its_old_timings() -> None:
    """``first_poll`` / ``next_poll`` are ``first_delay`` / ``next_delay`` from the anchor,
    so ``client.wait()`` on the protocol polls exactly when it did."""
    policy = PollPolicy()
    job = JobTiming(100.0)
    assert policy.first_poll(job, 100.0) == 100.0 + policy.first_delay(45.0)
    job.polls = 1
    at = 100.0 + policy.first_delay(45.0)
    assert policy.next_poll(job, reply("generating"), at) == at + policy.next_delay(
        at - 100.0, 45.0, 1
    )


def test_only_a_completed_job_teaches_the_policy() -> None:
    """``finished`` records the duration of a completed job, and nothing for a failed one."""
    policy = PollPolicy()
    job = JobTiming(10.0)
    policy.finished(job, reply("error", error="boom"), 50.0)
    policy.finished(job, None, 50.0)
    assert policy.observations == 0
    policy.finished(job, reply("completed"), 50.0)
    assert policy.observations == 1
    assert list(policy._samples) == [pytest.approx(40.0 / 45.0)]


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_a_failed_poll_backs_off_exponentially_up_to_a_minute(scale: float) -> None:
    """After n failed polls in a row the next is 2**n service seconds later, at most 60."""
    policy = PollPolicy(time_scale=scale)
    job = JobTiming(0.0)
    waits = []
    for failures in range(1, 9):
        job.failures = failures
        waits.append(policy.after_failure(job, 5.0) - 5.0)
    assert waits == pytest.approx([x * scale for x in (2, 4, 8, 16, 32, 60, 60, 60)])


def test_the_fixed_planner_polls_at_a_constant_interval_and_learns_nothing() -> None:
    """Every decision is ``interval`` (times ``time_scale``) after now, whatever happened."""
    planner = FixedIntervalPlanner(interval=10, time_scale=0.5)
    job = JobTiming(0.0)
    job.failures = 7
    assert planner.first_poll(job, 3.0) == 8.0
    assert planner.next_poll(job, reply("queued"), 20.0) == 25.0
    assert planner.after_failure(job, 30.0) == 35.0
    planner.finished(job, reply("completed"), 40.0)
    assert planner.next_poll(job, reply("generating"), 40.0) == 45.0
    polls, delay = drive(FixedIntervalPlanner(interval=10), 46.0)
    assert (polls, delay) == (5, 4.0)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"time_scale": 0}])
def test_the_fixed_planner_rejects_settings_that_cannot_work(kwargs: dict[str, float]) -> None:
    """A non-positive interval or time scale raises ValueError."""
    with pytest.raises(ValueError):
        FixedIntervalPlanner(**kwargs)


def test_the_hint_planner_follows_the_server_hint_within_bounds() -> None:
    """A numeric ``eta_seconds`` decides the next poll (bounded); otherwise the fallback does."""
    fallback = FixedIntervalPlanner(interval=10)
    planner = ServerHintPlanner(fallback, least=1.0, most=30.0)
    job = JobTiming(0.0)
    assert planner.first_poll(job, 0.0) == 10.0
    assert planner.next_poll(job, reply("generating", eta_seconds=12), 10.0) == 22.0
    assert planner.next_poll(job, reply("generating", eta_seconds=500), 10.0) == 40.0
    assert planner.next_poll(job, reply("generating", eta_seconds=0), 10.0) == 11.0
    for junk in ("soon", True, -3, math.nan, math.inf, None, [1]):
        assert planner.next_poll(job, reply("generating", eta_seconds=junk), 10.0) == 20.0
    assert planner.next_poll(job, reply("generating"), 10.0) == 20.0
    assert planner.after_failure(job, 10.0) == 20.0


def test_the_hint_planner_detects_a_hinted_job_with_few_polls() -> None:
    """A server whose hint is the true remaining time is detected at the first hinted poll."""
    duration = 47.0

    class Truthful(ServerHintPlanner):  # type: ignore[misc]
        def next_poll(self, job: PollJob, reply_: Generation, now: float) -> float:
            hinted = reply("generating", eta_seconds=duration - now)
            due: float = super().next_poll(job, hinted, now)
            return due

    polls, delay = drive(Truthful(PollPolicy()), duration)
    assert polls == 2 and delay == pytest.approx(0.0)


# ---------------------------------------------------------------------- the batch planner


def batch_job(planner: BatchPlanner[JobTiming], now: float, **kw: bool) -> JobTiming:
    """A job submitted (or, with ``resumed``, tracked) at ``now`` and added to ``planner``."""
    job = JobTiming(now, resumed=kw.get("resumed", False))
    planner.add(job)
    return job


def test_the_batch_planner_without_a_queue_is_the_policy() -> None:
    """Queue-unaware (a fixed policy), the batch planner plans exactly as the policy does."""
    policy = FixedIntervalPolicy(interval=7)
    planner = BatchPlanner[JobTiming](policy)
    job = batch_job(planner, 0.0)
    assert planner.queue is None and job.rank == -1 and planner.created == 1
    assert planner.first_poll(job, 0.0) == 7.0
    assert planner.next_poll(job, reply("generating"), 7.0) == 14.0
    assert planner.successor(14.0) is None and not planner.deep_queue


def test_a_resumed_job_is_polled_at_once_and_one_in_16_gets_a_canary() -> None:
    """Resumed ids are looked at immediately; rank 0, 16, 32... are polled after 1.5 graces."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = [batch_job(planner, 0.0) for _ in range(33)]
    resumed = batch_job(planner, 0.0, resumed=True)
    assert planner.created == 33 and resumed.rank == 33
    assert planner.first_poll(resumed, 5.0) == 5.0
    firsts = [planner.first_poll(job, 0.0) for job in jobs]
    assert [i for i, t in enumerate(firsts) if t == 15.0] == [0, 16, 32]
    assert all(t == pytest.approx(40.5) for i, t in enumerate(firsts) if i % 16)


def saturate(planner: BatchPlanner[JobTiming], n: int, slots: int) -> list[JobTiming]:
    """``n`` jobs submitted at 0; the first ``slots`` seen generating at 5 s, the next queued
    at 30 s: the planner learns the server runs ``slots`` at once."""
    jobs = [batch_job(planner, 0.0) for _ in range(n)]
    for job in jobs[:slots]:
        planner.seen(job, reply("generating"), 5.0)
    planner.seen(jobs[slots], reply("queued"), 30.0)
    return jobs


def test_a_queued_job_is_not_polled_before_its_predecessor_can_have_finished() -> None:
    """On a saturated server of 10 slots, job 10 waits for job 0's expected completion."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = saturate(planner, 30, 10)
    queue = planner.queue
    assert queue is not None and queue.saturated and queue.concurrency == 10
    assert jobs[10].queued_seen and not jobs[10].started
    due = planner.plan(jobs[10], 30.0)
    # job 0's anchor (0) + its shortest plausible duration (before learning: 0.9 x 45 s):
    # a predicted start errs early, since an early poll is corrected and a late one is not
    assert jobs[10].anchor == pytest.approx(40.5)
    assert due == pytest.approx(40.5 + 0.9 * 45.0)
    assert planner.recheck(jobs[0], 30.0) is None  # started: poll as planned
    assert planner.deep_queue  # 30 outstanding >= 2 x 10


def test_a_freed_slot_replans_the_job_that_takes_it() -> None:
    """When job 0 finishes, the queued job 10 that takes its slot is planned again, and
    handed back when that is earlier than planned (here: the rate limit has let go)."""
    held = [True]
    planner = BatchPlanner[JobTiming](PollPolicy(), holding=lambda: held[0])
    jobs = saturate(planner, 12, 10)
    jobs[10].planned = planner.plan(jobs[10], 30.0)
    assert jobs[10].planned == pytest.approx(85.5)  # rate-bound: predicted start + 45 s
    held[0] = False
    first = jobs[0]
    first.polls, first.due = 2, 35.0
    planner.finished(first, reply("completed"), 35.0)
    assert planner.queue is not None and planner.queue.done == 1
    nxt = planner.successor(35.0)
    # its start is now known (job 0's slot came free at 35 s, earlier than predicted)
    assert nxt is not None and nxt[0] is jobs[10] and nxt[1] == pytest.approx(35.0 + 40.5)
    assert jobs[10].anchor == pytest.approx(35.0)
    jobs[10].planned = nxt[1]
    assert planner.successor(35.0) is None  # not earlier than planned now
    assert planner.start_estimate(jobs[11]) is None  # its slot has not come free yet


def test_a_job_found_done_teaches_a_bound_and_one_seen_running_a_duration() -> None:
    """Seen generating and then done: a duration between the polls; done at its first poll:
    an upper bound; done in the create reply (no poll): nothing."""
    policy = PollPolicy()
    planner = BatchPlanner[JobTiming](policy)
    seen, unseen, instant = (batch_job(planner, 0.0) for _ in range(3))
    planner.seen(seen, reply("generating"), 40.0)
    seen.polls, seen.due = 2, 44.0
    planner.finished(seen, reply("completed"), 44.5)
    assert list(policy._samples) == [pytest.approx(42.0 / 45.0)]  # midway, to the planned time
    unseen.polls, unseen.due = 1, 41.0
    planner.finished(unseen, reply("completed"), 41.0)
    # nothing learned below the 41 s bound yet: half a step (3 s) before it
    assert policy.observations == 2 and policy._samples[-1] == pytest.approx(39.5 / 45.0)
    planner.finished(instant, reply("completed"), 1.0)
    assert policy.observations == 2


def test_rate_bound_only_without_a_deep_queue() -> None:
    """A holding limiter makes the batch rate-bound (later first polls), unless the server
    has two waves of its jobs queued."""
    held = [True]
    planner = BatchPlanner[JobTiming](PollPolicy(), holding=lambda: held[0])
    job = batch_job(planner, 0.0)
    assert planner.rate_bound()
    assert planner.plan(job, 0.0) == pytest.approx(45.0)  # the expected duration itself
    held[0] = False
    assert planner.plan(job, 0.0) == pytest.approx(40.5)
    deep = BatchPlanner[JobTiming](PollPolicy(), holding=lambda: True)
    saturate(deep, 30, 10)
    assert deep.deep_queue and not deep.rate_bound()


def test_the_failure_backoff_can_follow_the_clients_time_scale() -> None:
    """``failure_time_scale`` (the engine passes the client's) scales the back-off."""
    planner = BatchPlanner[JobTiming](PollPolicy(), failure_time_scale=0.1)
    job = batch_job(planner, 0.0)
    job.failures = 3
    assert planner.after_failure(job, 1.0) == pytest.approx(1.8)


def test_throughput_bounds_a_predicted_start() -> None:
    """With finishes observed, a queued job's start is predicted no later than the batch's
    throughput allows, even when the chain of expected durations says later."""
    rng = random.Random(3)
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = saturate(planner, 60, 10)
    for k, job in enumerate(jobs[:10]):
        job.polls, job.due = 1, 30.0 + k
        job.last_poll = 29.0 + k + rng.random() * 0.1
        planner.finished(job, reply("completed"), 30.0 + k)
    assert planner.throughput() > 0.5
    late = jobs[55]
    planner.plan(late, 40.0)
    ahead = late.rank - 10
    assert late.anchor <= 40.0 + ahead / planner.throughput() + 1e-9


# ---------------------------------------------------------------------- issue 16: tails


def test_a_fit_over_few_samples_never_steps_further_than_tail_gap() -> None:
    """Eight durations that happen to lie one 15 s step from an early outlier (what the first
    completions of a faulty run taught) no longer fit a 15 s step: every fitted step is at
    most ``tail_gap``, so a job in the bulk is found at most that late."""
    policy = PollPolicy()
    for seconds in (27.8, 42.8, 42.9, 43.0, 42.7, 42.8, 43.1, 42.9):
        policy.observe(seconds, 45.0)
    sched = policy.schedule()
    assert sched.step * 45.0 <= policy.tail_gap + 1e-9
    job = JobTiming(0.0, 45.0)
    t = policy.first_poll(job, 0.0)
    looks = [t]
    while t < 60.0:
        t = policy.next_poll(job, reply("generating"), t)
        looks.append(t)
    gaps = [b - a for a, b in itertools.pairwise(looks)]
    assert max(gaps) <= policy.tail_gap + 1e-9


def test_a_rate_bound_first_poll_is_at_most_tail_gap_past_a_short_duration() -> None:
    """Rate-bound, the first poll is still the late one (most jobs cost one request), but no
    later than ``tail_gap`` past the 10th percentile of the durations: a job that finishes
    early is found at most about 10 s late, not the whole spread late."""
    rng = random.Random(16)
    policy = PollPolicy()
    for _ in range(200):
        policy.observe(45.0 * math.exp(0.075 * rng.gauss(0.0, 1.0)), 45.0)
    sched = policy.schedule()
    assert sched.early is not None and sched.bound is not None
    bound = policy.first_delay(45.0, rate_bound=True)
    assert bound >= policy.first_delay(45.0)
    assert bound <= sched.early * 45.0 + policy.tail_gap + 1e-9
    # wide durations: the 90th percentile is far beyond the bound, which holds
    wide = PollPolicy()
    for _ in range(200):
        wide.observe(45.0 * math.exp(0.3 * rng.gauss(0.0, 1.0)), 45.0)
    wide_sched = wide.schedule()
    assert wide_sched.early is not None and wide_sched.bound is not None
    assert wide_sched.bound * 45.0 > wide_sched.early * 45.0 + wide.tail_gap
    assert wide.first_delay(45.0, rate_bound=True) == pytest.approx(
        max(wide_sched.first * 45.0, wide_sched.early * 45.0 + wide.tail_gap)
    )
    # slower jobs (the 10th percentile of those that finish early) cost one poll each
    polls = []
    for _ in range(200):
        d = 45.0 * math.exp(0.075 * rng.gauss(0.0, 1.0))
        job = JobTiming(0.0, 45.0)
        t, n = bound, 1
        while t < d:
            t = policy.next_poll(job, reply("generating"), t)
            n += 1
        polls.append(n)
        assert t - d <= policy.tail_gap + 10.0  # never the whole spread late
    assert sum(polls) / len(polls) < 2.5


def test_an_active_job_is_not_taken_as_started_by_the_queue_model() -> None:
    """``active`` (undocumented; the provider's example loop reads it as "not final") says
    nothing about a server slot: a queued job of rank 96 answering ``active`` must not make
    the planner believe 97 run at once, nor raise the paid-ahead cap (issue 16: a fault that
    answered ``active`` let 144 paid jobs wait against a cap of about 100)."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = saturate(planner, 100, 50)
    queue = planner.queue
    assert queue is not None and queue.concurrency == 50
    planner.seen(jobs[96], reply("active"), 31.0)
    assert queue.concurrency == 50 and queue.lower_bound() == 50
    assert not jobs[96].started and not jobs[96].running_seen
    assert planner.concurrency_guess() == 50
    assert not planner.room_ahead(0, 1.0)  # 100 outstanding = (1 + 1) x 50: full
    # an unsaturated server: ``active`` does not grow the cap either
    fresh = BatchPlanner[JobTiming](PollPolicy())
    early = [batch_job(fresh, 0.0) for _ in range(70)]
    fresh.seen(early[69], reply("active"), 2.0)
    assert fresh.concurrency_guess() == 32
    fresh.seen(early[40], reply("generating"), 2.0)
    assert fresh.concurrency_guess() == 41


def test_the_queue_models_paying_bound_is_monotone_and_only_while_unsettled() -> None:
    """``proven`` (the most seen running at once) never falls as jobs finish; the paid-ahead
    cap counts it only while the server is saturated and the concurrency is unsettled (upper
    bound above it); settled, or not saturated, it has nothing to say (``None``)."""
    queue = QueueModel(grace=10.0)
    for rank in range(30):
        queue.saw_started(rank)
    assert queue.proven() == 30 and queue.paying_bound() is None  # not saturated
    for _ in range(12):
        queue.finished()
    queue.saw_started(5)  # an old sighting repeated: no lower
    assert queue.lower_bound() == 18 and queue.proven() == 30
    queue.saw_queued(60, waited=5.0)  # within the grace: the normal short queue
    assert queue.paying_bound() is None
    queue.saw_queued(60, waited=15.0)  # at most 48 run at once
    assert queue.saturated and queue.concurrency == 48
    assert queue.paying_bound() == 30
    queue.saw_started(50)  # 51 - 12 = 39 seen running at once
    assert queue.proven() == 39 and queue.paying_bound() == 39
    queue.saw_queued(51, waited=15.0)  # at most 39: settled
    assert queue.concurrency == 39 and queue.paying_bound() is None
    for _ in range(10):
        queue.finished()  # the bounds stay met: settled for good
    assert queue.lower_bound() == 29 and queue.paying_bound() is None
    # saturated before anything was seen started (another client holds the slots): 1
    other = QueueModel(grace=10.0)
    other.saw_queued(20, waited=15.0)
    assert other.concurrency == 20 and other.paying_bound() == 1
