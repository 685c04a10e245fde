"""Lifecycle, timing, concurrency and rate limits, credits, controls, determinism and ledger."""

from __future__ import annotations

import json
import statistics
import sys
import time

import pytest
from pydantic import ValidationError

from tests.emulator._helpers import VENDOR, FakeClock, create, make_emulator, poll
from veo_async.emulator import (
    Emulator,
    EmulatorConfig,
    FaultConfig,
    Job,
    credits_for,
    duplicate_prompts,
    generation_seconds,
)


def _id(reply_body: bytes) -> str:
    generation_id: str = json.loads(reply_body)["id"]
    return generation_id


def test_status_changes_at_the_exact_simulated_times() -> None:
    """A job is queued for queue_delay, generating for its generation time, then completed."""
    clock = FakeClock()
    emu = make_emulator(clock, time_scale=0.5, queue_delay=2.0)
    gid = _id(create(emu).body)
    record = emu.generation(gid)
    assert record is not None and record["started_at"] is None
    job = emu.ledger.generations[gid]
    assert job.started_at == clock.now + 1.0  # 2 simulated s at scale 0.5
    assert job.finished_at is not None
    assert poll(emu, gid).json()["status"] == "queued"
    clock.now = job.started_at
    assert poll(emu, gid).json()["status"] == "generating"
    clock.now = job.finished_at - 1e-6
    assert poll(emu, gid).json()["status"] == "generating"
    clock.now = job.finished_at
    assert poll(emu, gid).json()["status"] == "completed"
    record = emu.generation(gid)
    assert record is not None
    assert record["completed_at"] == job.finished_at
    assert record["first_completed_poll_at"] == job.finished_at
    assert record["detection_delay"] == 0.0
    assert record["polls"] == 4


def test_generation_time_distribution() -> None:
    """5 s Veo2 clips take about 40-50 s with spread; longer clips and Veo 3 take longer."""
    emu = make_emulator(queue_delay=0.0)
    veo2 = [emu.ledger.generations[_id(create(emu, prompt=f"p{i}").body)] for i in range(300)]
    times = [job.gen_time for job in veo2]
    assert 43.0 < statistics.mean(times) < 47.0
    assert statistics.pstdev(times) > 1.5
    assert sum(40.0 <= t <= 50.0 for t in times) / len(times) > 0.8
    assert generation_seconds("veo2", 8) > generation_seconds("veo2", 5)
    assert generation_seconds("google/veo3", 8) > generation_seconds("veo2", 8)
    assert generation_seconds("google/veo-3.1-t2v-fast", 8) < generation_seconds("google/veo3", 8)


def test_time_scale_compresses_generation_time() -> None:
    """time_scale 0.01 turns a ~45 s job into ~0.45 s of wall time."""
    slow = make_emulator(seed=3)
    fast = make_emulator(seed=3, time_scale=0.01)
    a = slow.ledger.generations[_id(create(slow).body)]
    b = fast.ledger.generations[_id(create(fast).body)]
    assert b.gen_time == pytest.approx(a.gen_time * 0.01)


def test_concurrency_limit_starts_queued_jobs_when_a_slot_frees() -> None:
    """With max_concurrent=2 the rest stay queued and each starts exactly when a slot frees."""
    clock = FakeClock()
    emu = make_emulator(clock, max_concurrent=2, queue_delay=0.0)
    ids = [_id(create(emu, prompt=f"p{i}").body) for i in range(7)]
    assert [poll(emu, g).json()["status"] for g in ids[:3]] == ["generating"] * 2 + ["queued"]
    clock.advance(10_000.0)
    emu.stats()  # advance the simulation with no further polls
    jobs = [emu.ledger.generations[g] for g in ids]
    finishes = sorted(j.finished_at for j in jobs[:2] if j.finished_at is not None)
    for job in jobs[2:]:
        assert job.started_at is not None and job.finished_at is not None
        assert job.started_at in finishes  # started at the exact moment a slot freed
        finishes.append(job.finished_at)
        finishes.sort()
    # Never more than two generating at once.
    events = sorted(
        [(j.started_at, 1) for j in jobs if j.started_at is not None]
        + [(j.finished_at, -1) for j in jobs if j.finished_at is not None],
        key=lambda e: (e[0], e[1]),
    )
    running = 0
    for _, delta in events:
        running += delta
        assert running <= 2


def test_limit_is_per_key() -> None:
    """Another key's jobs do not wait for the first key's slots."""
    emu = make_emulator(max_concurrent=1, queue_delay=0.0)
    create(emu, key="a", prompt="a1")
    queued = emu.ledger.generations[_id(create(emu, key="a", prompt="a2").body)]
    other = emu.ledger.generations[_id(create(emu, key="b", prompt="b1").body)]
    assert queued.started_at is None and other.started_at is not None


def test_raising_max_concurrent_starts_queued_jobs_now() -> None:
    """Raising the limit mid-run starts waiting jobs at the moment of the change."""
    clock = FakeClock()
    emu = make_emulator(clock, max_concurrent=1, queue_delay=0.0)
    create(emu, prompt="a")
    waiting = emu.ledger.generations[_id(create(emu, prompt="b").body)]
    clock.advance(3.0)
    emu.configure(max_concurrent=2)
    assert waiting.started_at == clock.now


def test_rate_limit_answers_429_with_retry_after() -> None:
    """Past the token bucket a key gets 429 + Retry-After; creates and polls both count."""
    clock = FakeClock()
    emu = make_emulator(clock, rate_limit=2.0, rate_limit_burst=2.0)
    gid = _id(create(emu).body)
    assert poll(emu, gid).status == 200
    limited = poll(emu, gid)
    assert limited.status == 429 and limited.header("retry-after") == "1"
    assert limited.json()["statusCode"] == 429
    assert create(emu, key="other").status == 200  # per key
    clock.advance(0.5)
    assert poll(emu, gid).status == 200
    assert emu.ledger.rate_limited == 1


def test_retry_after_scales_and_is_fractional() -> None:
    """Under time_scale 0.01 the bucket refills 100x faster and Retry-After is fractional."""
    clock = FakeClock()
    emu = make_emulator(clock, rate_limit=1.0, time_scale=0.01)
    create(emu)
    limited = create(emu, prompt="b")
    assert limited.status == 429 and limited.header("retry-after") == "0.01"
    clock.advance(0.01)
    assert create(emu, prompt="b").status == 200


def test_credits_run_out_with_403() -> None:
    """Creates beyond the key's credit balance get 403; lowering credits mid-run applies."""
    emu = make_emulator(credits=240_000)
    assert credits_for("veo2", 5) == 120_000
    assert create(emu, prompt="1").status == 200
    assert create(emu, prompt="2").status == 200
    refused = create(emu, prompt="3")
    assert refused.status == 403 and "credits" in refused.json()["message"].lower()
    assert create(emu, key="other", prompt="4").status == 200
    emu.configure(credits=0)
    assert create(emu, key="third", prompt="5").status == 403
    assert emu.ledger.credits_charged == 360_000
    assert emu.ledger.generations_created == 3


def test_changing_the_key_mid_run_gives_401() -> None:
    """After configure(api_key=...) the old key gets 401 on creates and polls."""
    emu = make_emulator(api_key="old")
    gid = _id(create(emu, key="old").body)
    emu.configure(api_key="new")
    assert poll(emu, gid, key="old").status == 401
    assert create(emu, key="old").status == 401
    assert create(emu, key="new").status == 200


def test_restart_forgets_jobs() -> None:
    """After restart() known ids get 404; the ledger keeps them, marked forgotten."""
    clock = FakeClock()
    emu = make_emulator(clock)
    done = _id(create(emu, prompt="done").body)
    clock.advance(500)
    running = _id(create(emu, prompt="running").body)
    emu.restart()
    assert poll(emu, done).status == 404
    assert poll(emu, running).status == 404
    stats = emu.stats()
    assert stats["restarts"] == 1
    assert stats["generations_by_status"] == {"completed": 1, "forgotten": 1}


def test_reset_clears_the_ledger() -> None:
    """reset() forgets jobs and ledger but keeps the config."""
    emu = make_emulator(max_concurrent=3)
    create(emu)
    emu.reset()
    assert emu.ledger.generations_created == 0 and emu.stats()["generations"] == []
    assert emu.config.max_concurrent == 3


def _run(seed: int, order: list[str]) -> dict[str, str]:
    clock = FakeClock()
    emu = make_emulator(clock, seed=seed, faults=FaultConfig.mixed(0.3))
    ids: dict[str, str] = {}
    for prompt in order:
        for _ in range(20):
            reply = create(emu, prompt=prompt)
            if reply.status == 200 and reply.fault is None:
                ids[prompt] = _id(reply.body)
                break
    return ids


def test_same_seed_same_run() -> None:
    """Ids, generation times and fault decisions repeat under the same seed."""

    def trace(seed: int) -> list[object]:
        clock = FakeClock()
        emu = make_emulator(clock, seed=seed, faults=FaultConfig.mixed(0.4))
        out: list[object] = []
        for i in range(40):
            reply = create(emu, prompt=f"p{i % 10}")
            out.append((reply.status, reply.fault))
            if reply.status == 200 and reply.fault is None:
                out.append(poll(emu, _id(reply.body)).fault)
            clock.advance(1.0)
        stats = emu.stats()
        out.append([(g["id"], g["completed_at"]) for g in stats["generations"]])
        out.append(stats["faults_injected"])
        return out

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_decisions_do_not_depend_on_interleaving() -> None:
    """A prompt gets the same id and faults whatever order other prompts are sent in."""
    prompts = [f"prompt {i}" for i in range(12)]
    assert _run(9, prompts) == _run(9, list(reversed(prompts)))


def test_ledger_records_and_duplicates() -> None:
    """The ledger has per-generation fields and finds prompts that were paid twice."""
    clock = FakeClock()
    emu = make_emulator(clock)
    first = _id(create(emu, prompt="twice").body)
    second = _id(create(emu, prompt="twice").body)
    create(emu, prompt="once", path=VENDOR)
    assert first != second
    clock.advance(200)
    poll(emu, first)
    clock.advance(3)
    poll(emu, first)
    stats = emu.stats()
    assert stats["duplicate_prompts"] == {"twice": [first, second]}
    assert emu.duplicate_prompts() == duplicate_prompts(stats["generations"])
    record = next(g for g in stats["generations"] if g["id"] == first)
    for name in (
        "prompt",
        "model",
        "body",
        "created_at",
        "started_at",
        "completed_at",
        "status",
        "first_completed_poll_at",
        "polls",
    ):
        assert name in record
    assert record["polls"] == 2 and record["status"] == "completed"
    assert record["body"] == {"model": "veo2", "prompt": "twice"}
    assert record["first_completed_poll_at"] - record["completed_at"] > 0
    assert stats["create_requests"] == 3 and stats["poll_requests"] == 2
    assert stats["credits_charged"] == 3 * 120_000


def test_fault_eligibility_by_request_class() -> None:
    """Download-only, create-only and poll-only faults never hit other request classes."""
    emu = make_emulator(faults={"truncated_download": 1.0})
    gid = _id(create(emu).body)
    assert poll(emu, gid).fault is None
    emu.set_faults(truncated_download=0.0, lost_create=1.0)
    assert poll(emu, gid).fault is None
    emu.set_faults(lost_create=0.0, unknown_status=1.0)
    assert create(emu, prompt="x").fault is None
    assert poll(emu, gid).fault == "unknown_status"


def test_fault_config_validation_and_mixed() -> None:
    """Rates must be probabilities that add up to at most 1 per request class; mixed spreads."""
    with pytest.raises(ValidationError):
        FaultConfig(server_error=0.7, bad_gateway=0.5)
    with pytest.raises(ValidationError):
        FaultConfig(server_error=1.5)
    mixed = FaultConfig.mixed(0.2, lost_create=0.01)
    poll_total = sum(
        mixed.rate(k)
        for k in (
            "rate_limit",
            "rate_limit_no_retry_after",
            "server_error",
            "bad_gateway",
            "service_unavailable",
            "gateway_timeout",
            "connection_reset",
            "malformed_json",
            "unknown_status",
        )
    )
    assert poll_total == pytest.approx(0.2)
    assert mixed.lost_create == 0.01 and mixed.slow_response == 0.0
    with pytest.raises(ValidationError):
        EmulatorConfig().patched({"faults": {"nope": 1}})


def test_mixed_fault_rate_is_observed() -> None:
    """Over many polls the injected fraction matches the configured total rate."""
    emu = make_emulator(faults=FaultConfig.mixed(0.3))
    gid = next(
        _id(r.body) for r in (create(emu, prompt=f"p{i}") for i in range(50)) if r.fault is None
    )
    faults = sum(poll(emu, gid).fault is not None for _ in range(3000))
    assert 0.26 < faults / 3000 < 0.34


def _create_and_poll(n: int) -> tuple[Emulator, list[str], float]:
    """``n`` creates and two polls of each; the CPU seconds they took."""
    clock = FakeClock()
    emu = Emulator(EmulatorConfig(time_scale=0.001, max_concurrent=50), clock=clock)
    started = time.process_time()
    ids = []
    for i in range(n):
        ids.append(_id(create(emu, prompt=f"prompt {i}").body))
        clock.advance(0.0001)
    for _ in range(2):
        for gid in ids:
            poll(emu, gid)
        clock.advance(5.0)
    return emu, ids, time.process_time() - started


def test_jobs_are_small_and_requests_are_fast() -> None:
    """Jobs are slotted, and a request's cost does not grow with the number of jobs: five
    times the jobs costs about five times the CPU (a ratio within one run, not a timing)."""
    assert "__dict__" not in Job.__slots__
    _, _, small = _create_and_poll(2_000)
    emu, ids, large = _create_and_poll(10_000)
    assert large < 12 * max(small, 1e-3), (small, large)  # linear is 5x; quadratic 25x
    job = emu.ledger.generations[ids[0]]
    assert not hasattr(job, "__dict__")
    assert sys.getsizeof(job) < 250
    assert emu.stats(include_generations=False)["generations_by_status"] == {"completed": 10_000}
