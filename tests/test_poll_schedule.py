"""The batch planner's schedule corrections (issue 16): first wave, tails, paying ahead.

Pure decisions driven with fake times, plus :mod:`benchmarks.plan_sim`, a virtual-time FIFO
server driven the way the batch runner drives the planner. No clock is read and nothing is
timed: every figure is a deterministic function of the seed.
"""

from __future__ import annotations

import pytest

from benchmarks.plan_sim import simulate
from veo_async import Generation, PollPolicy
from veo_async.polling import BatchPlanner, JobTiming
from veo_async.polling._batch import INITIAL_AHEAD, PROBE_DELAY


def reply(status: str) -> Generation:
    """A status reply as the API sends it."""
    body: dict[str, object] = {"id": "g", "status": status}
    if status == "completed":
        body["video"] = {"url": "https://cdn.example/v.mp4"}
    return Generation.model_validate(body)


def jobs_at(planner: BatchPlanner[JobTiming], n: int, now: float = 0.0) -> list[JobTiming]:
    """``n`` jobs submitted at ``now`` and added to ``planner`` (ranks 0 .. n-1)."""
    out = []
    for _ in range(n):
        job = JobTiming(now)
        planner.add(job)
        out.append(job)
    return out


def finish(planner: BatchPlanner[JobTiming], job: JobTiming, seen_at: float, now: float) -> None:
    """``job`` was seen generating at ``seen_at`` and found completed at ``now``."""
    planner.seen(job, reply("generating"), seen_at)
    job.polls += 2
    job.due = now
    planner.finished(job, reply("completed"), now)


# ---------------------------------------------------------------------- first wave


def test_a_job_seen_generating_before_saturation_is_reanchored_at_its_slot() -> None:
    """Completion order: job 10 of a 10-slot server was seen generating at 40 s, before the
    server was known to be saturated, so it stayed anchored at its submission (0 s). Once
    the server is known to run 10, job 10 started when the first slot came free (job 0's
    finish, 37.5 to 38.5 s): its next look is planned from there, not as a straggler 40 s
    past its start."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 20)
    for job in jobs[:10]:
        planner.seen(job, reply("generating"), 5.0)
    finish(planner, jobs[0], seen_at=37.5, now=38.5)
    finish(planner, jobs[1], seen_at=38.0, now=39.0)
    late = jobs[10]
    planner.seen(late, reply("generating"), 40.0)
    late.polls = 1
    assert late.started and late.anchor == 0.0
    planner.seen(jobs[12], reply("queued"), 41.0)  # saturated: 12 - 2 finished = 10 slots
    assert planner.queue is not None and planner.queue.concurrency == 10
    due = planner.plan(late, 41.0)
    assert 37.5 <= late.anchor <= 38.5
    # planned as a job 3 s into its run: the first look at its first-poll offset
    assert due == pytest.approx(late.anchor + 0.9 * 45.0)


def test_a_queued_then_generating_job_starts_where_predicted_not_midway() -> None:
    """Seen queued at 40 s and generating at 87 s: its start is the predicted one (its
    predecessor's slot, 45 s) when that lies in between; the midpoint (63.5 s) was no
    estimate at all."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 12)
    for job in jobs[:10]:
        planner.seen(job, reply("generating"), 5.0)
    job = jobs[10]
    planner.seen(job, reply("queued"), 40.0)
    job.polls = 1
    job.anchor = 45.0  # the predicted start (as plan() sets it)
    planner.seen(job, reply("generating"), 87.0)
    assert job.started and job.anchor == 45.0
    # a prediction later than the sighting: the sighting bounds it
    other = jobs[11]
    planner.seen(other, reply("queued"), 40.0)
    other.anchor = 95.0
    planner.seen(other, reply("generating"), 60.0)
    assert other.anchor == 60.0


def test_a_known_slot_moves_a_queued_job_earlier_and_predictions_err_early() -> None:
    """A queued job's start is its predecessor's slot: predicted (not yet seen) at the
    predecessor's anchor plus the *shortest* plausible duration, and moved earlier as well as
    later once the slot is seen to come free."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 12)
    for job in jobs[:10]:
        planner.seen(job, reply("generating"), 5.0)
    planner.seen(jobs[10], reply("queued"), 30.0)
    planner.plan(jobs[10], 30.0)
    assert jobs[10].anchor == pytest.approx(0.9 * 45.0)  # before learning: 0.9 x prior
    finish(planner, jobs[0], seen_at=34.0, now=36.0)
    planner.plan(jobs[10], 36.0)
    assert 34.0 <= jobs[10].anchor <= 36.0  # earlier than predicted: the slot is known
    assert jobs[10].anchor >= 30.0  # never before it was last seen queued


def test_found_done_without_a_sighting_frees_the_slot_early() -> None:
    """A job found done at its first look (never seen running) frees its slot at its anchor
    plus the shortest plausible duration, not the median: its start may have been predicted
    late, and an early guess is corrected by the next job's polls, a late one never."""
    policy = PollPolicy()
    planner = BatchPlanner[JobTiming](policy)
    jobs = jobs_at(planner, 3)
    job = jobs[0]
    job.polls, job.due = 1, 60.0
    planner.finished(job, reply("completed"), 60.0)
    assert planner._freed == [pytest.approx(policy.shortest(45.0))]
    assert policy.shortest(45.0) < policy.expected(45.0)


# ---------------------------------------------------------------------- tails


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_past_the_tail_the_gap_between_looks_stays_bounded(scale: float) -> None:
    """Past the bulk of plausible completion times the step grows, but at most to
    ``tail_gap`` for ``tail_window`` x the expected duration; only a real straggler is then
    looked at up to every ``max_interval``."""
    policy = PollPolicy(time_scale=scale)
    tail = 1.3 * 45.0 * scale  # nothing learned: the tail starts at 1.3 x the prior
    gaps = [policy.next_delay(tail + k * scale, 45.0, 5) for k in range(0, 46)]
    assert max(gaps) <= policy.tail_gap * scale + 1e-9
    assert gaps[-1] == pytest.approx(policy.tail_gap * scale)
    straggler = policy.next_delay(tail + 200.0 * scale, 45.0, 20)
    assert straggler == pytest.approx(policy.max_interval * scale)


def test_tail_settings_are_validated() -> None:
    """A tail gap below the smallest step, or a negative window, is refused."""
    with pytest.raises(ValueError, match="tail_gap"):
        PollPolicy(tail_gap=0.1)
    with pytest.raises(ValueError, match="tail_window"):
        PollPolicy(tail_window=-1.0)


@pytest.mark.parametrize("n", [100, 200, 1000])
def test_the_simulated_schedule_meets_the_issue_targets(n: int) -> None:
    """Against a virtual FIFO server of 50 slots (the emulator's Veo2 timing), over three
    seeds: at most 3.5 status requests per job, p99 detection delay at most 10 s, the last
    job noticed within 10 s of the last completion. (Virtual time: a property of the
    schedule, not a timing of this machine.)"""
    for seed in range(3):
        run = simulate(n, seed=seed, queue_ahead=1.0)
        assert run.polls_per_job <= 3.5
        assert run.p99_delay <= 10.0
        assert run.makespan - run.server_makespan <= 10.0
        assert all(d >= 0 for d in run.delays)


# ---------------------------------------------------------------------- paying ahead


def test_room_ahead_counts_waves_of_the_learned_concurrency() -> None:
    """Before the concurrency is known the cap counts it as INITIAL_AHEAD; once learned, at
    most (1 + waves) x C jobs are created and not finished; creates in flight count. While
    the concurrency is known only between two bounds the cap counts the lower one."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 2 * INITIAL_AHEAD - 1)
    assert planner.room_ahead(0, 1.0) and not planner.room_ahead(1, 1.0)
    for job in jobs[:10]:
        planner.seen(job, reply("generating"), 5.0)
    planner.seen(jobs[20], reply("queued"), 30.0)  # saturated: C = 20 at most
    assert planner.concurrency_guess() == 20  # polls plan on the upper bound
    assert planner.paying_concurrency() == 10  # unsettled: paying counts the lower one
    assert not planner.room_ahead(0, 1.0)  # 63 outstanding > 20
    planner.seen(jobs[19], reply("generating"), 31.0)  # at least 20: settled
    assert planner.paying_concurrency() == planner.concurrency_guess() == 20
    assert not planner.room_ahead(0, 1.0)  # 63 outstanding > 40
    for job in jobs[:24]:
        finish(planner, job, seen_at=40.0, now=41.0)
    assert planner.concurrency_guess() == 20
    assert planner.room_ahead(0, 1.0)  # 39 outstanding < 40
    assert not planner.room_ahead(1, 1.0)  # one more being created: 40
    assert planner.room_ahead(0, 2.0) and not planner.room_ahead(0, 0.5)


def test_a_far_queued_sighting_under_a_rate_limit_pays_no_further_until_settled() -> None:
    """Issue 16, rate-limited trace: 100 created, 50 seen generating, then rank 97 seen
    queued 25 s in (its poll came late). The concurrency is now at most 97 and polls plan
    on that, but the cap counts the 50 seen running: no create goes until the bisecting
    looks settle it at 50 (it used to allow (1 + 1) x 97 outstanding: ~42 more paid), and
    then the cap is one wave of 50 as before."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 100)
    for job in jobs[:50]:
        planner.seen(job, reply("generating"), 5.0)
    planner.seen(jobs[97], reply("queued"), 25.2)
    queue = planner.queue
    assert queue is not None and queue.saturated
    assert queue.concurrency == 97 and planner.concurrency_guess() == 97
    assert queue.unsettled() == (50, 97)
    assert planner.paying_concurrency() == 50
    assert not planner.room_ahead(0, 1.0)  # 100 outstanding = (1 + 1) x 50
    looked = []
    while queue.unsettled() is not None:
        target = planner.settle(26.0)
        assert target is not None
        looked.append(target[0].rank)
        planner.seen(target[0], reply("queued"), 31.0)
        assert not planner.room_ahead(0, 1.0)  # nothing paid while it settles
    assert looked == [73, 61, 55, 52, 51, 50]
    assert queue.concurrency == 50 and planner.paying_concurrency() == 50
    assert not planner.room_ahead(0, 1.0)
    finish(planner, jobs[0], seen_at=40.0, now=41.0)
    assert planner.room_ahead(0, 1.0) and not planner.room_ahead(1, 1.0)  # 99 + 1 = 100


def test_while_unsettled_the_paid_ahead_cap_does_not_fall_as_jobs_finish() -> None:
    """The cap's lower bound is the most jobs ever seen running at once, not those running
    now: with 10 of the 50 seen generating finished (and no later job looked at yet), the
    cap still counts 50, so creates refill the freed slots instead of starving the server."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 100)
    for job in jobs[:50]:
        planner.seen(job, reply("generating"), 5.0)
    planner.seen(jobs[97], reply("queued"), 25.2)
    for job in jobs[:10]:
        finish(planner, job, seen_at=40.0, now=41.0)
    queue = planner.queue
    assert queue is not None and queue.lower_bound() == 40 and queue.proven() == 50
    assert queue.unsettled() is not None
    assert planner.paying_concurrency() == 50
    assert planner.room_ahead(9, 1.0) and not planner.room_ahead(10, 1.0)  # 90 outstanding


def test_a_probe_polls_the_newest_job_soon_and_a_sighting_raises_the_cap() -> None:
    """While creates are held and the server's concurrency is unknown, the newest job is
    polled PROBE_DELAY after its create (once); seen generating, the server runs at least
    that many, so the cap grows; a saturated server is not probed."""
    policy = PollPolicy(time_scale=0.5)
    planner = BatchPlanner[JobTiming](policy)
    jobs = jobs_at(planner, 2 * INITIAL_AHEAD, now=10.0)
    newest = jobs[-1]
    newest.planned = planner.first_poll(newest, 10.0)
    probe = planner.probe(10.5)
    assert probe is not None and probe[0] is newest
    assert probe[1] == pytest.approx(10.0 + PROBE_DELAY * 0.5)
    newest.planned = probe[1]
    assert planner.probe(10.6) is None  # probed once
    assert planner.recheck(newest, probe[1]) is None  # not postponed by the queue model
    planner.seen(newest, reply("generating"), probe[1])
    assert planner.concurrency_guess() == 2 * INITIAL_AHEAD
    assert planner.room_ahead(0, 1.0)


def test_a_saturated_server_is_bisected_to_its_concurrency_then_left_alone() -> None:
    """Saturated, with the concurrency between a lower bound (job 9 seen generating) and an
    upper one (job 30 seen queued): the job halfway between is polled past the queue grace;
    its sighting halves the gap, and once the bounds meet nothing more is probed."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 40)
    planner.seen(jobs[9], reply("generating"), 15.0)
    planner.seen(jobs[30], reply("queued"), 15.0)
    queue = planner.queue
    assert queue is not None and queue.unsettled() == (10, 30)
    probe = planner.probe(16.0)
    assert probe is not None and probe[0] is jobs[20] and probe[1] == pytest.approx(16.0)
    assert planner.recheck(jobs[20], 16.0) is None  # polled now, not postponed
    planner.seen(jobs[20], reply("queued"), 16.0)  # fewer than 20 slots
    assert queue.unsettled() == (10, 20)
    probe = planner.probe(17.0)
    assert probe is not None and probe[0] is jobs[15]
    planner.seen(jobs[15], reply("generating"), 17.0)  # at least 16
    assert queue.unsettled() == (16, 20)
    for rank in (18, 17, 16):
        probe = planner.probe(18.0)
        assert probe is not None and probe[0] is jobs[rank]
        planner.seen(jobs[rank], reply("queued"), 18.0)
    assert queue.unsettled() is None and queue.concurrency == 16
    assert planner.probe(19.0) is None


def test_the_cap_keeps_the_makespan_and_bounds_paid_but_not_started() -> None:
    """Simulated 1,000 jobs on 50 slots: with one wave ahead the paid-but-not-started jobs
    stay near one wave (950 without the cap) and the last job is noticed as early."""
    free = simulate(1000, seed=1)
    capped = simulate(1000, seed=1, queue_ahead=1.0)
    assert free.max_paid_not_started >= 900
    assert capped.max_paid_not_started <= 1.6 * 50
    assert capped.makespan <= free.makespan * 1.01


def test_a_canary_is_not_postponed_by_the_queue_model() -> None:
    """Rank 0, 16, 32... get an early look while the server is not known to be saturated;
    the due-time recheck lets it go (it used to push it back to the planned first poll, so
    no canary ever looked)."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 20)
    due = planner.first_poll(jobs[16], 0.0)
    assert due == pytest.approx(15.0)
    assert planner.recheck(jobs[16], due) is None
    assert planner.recheck(jobs[17], 15.0) is not None  # not a canary: planned as before


def test_the_runner_settles_the_concurrency_even_when_nothing_is_held() -> None:
    """``settle`` (called by the runner after every reply) bisects the concurrency whether or
    not creates are held back, and only while the server is saturated and unsettled."""
    planner = BatchPlanner[JobTiming](PollPolicy())
    jobs = jobs_at(planner, 40)
    assert planner.settle(1.0) is None  # not saturated
    planner.seen(jobs[9], reply("generating"), 15.0)
    planner.seen(jobs[30], reply("queued"), 15.0)
    target = planner.settle(15.5)
    assert target is not None and target[0] is jobs[20]
    assert planner.settle(15.6) is None  # already being looked at
