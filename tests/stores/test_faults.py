"""Faults against real processes and a real redis-server: SIGKILL, restarts, unreachable URLs."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from veo_async.stores import (
    Event,
    JobState,
    RedisStore,
    SharedBudget,
    SQLiteStore,
    StoreError,
    StoreUnavailableError,
    WorkItem,
    input_keys,
    open_store,
)

from .conftest import ASYNCIO_ONLY, STORE_KINDS, RedisServer, free_port, worker_command

pytestmark = pytest.mark.anyio


async def read_line(stream: BufferedByteReceiveStream) -> str:
    """One line of a worker's stdout."""
    return (await stream.receive_until(b"\n", 1 << 20)).decode()


async def kill(proc: Process) -> None:
    """SIGKILL a worker process and reap it."""
    proc.send_signal(signal.SIGKILL)
    with anyio.move_on_after(10):
        await proc.wait()


@STORE_KINDS
@pytest.mark.slow
async def test_a_killed_workers_jobs_are_taken_over(store_url: str, batch_id: str) -> None:
    """A worker holds every job (some pending, some with an intent, some with an id) and is
    SIGKILLed: while it lived nobody could take its leases; after, another worker reclaims all
    of them, and each job's state says what to do: submit, mark uncertain, or track the id."""
    n = 12
    proc = await anyio.open_process(worker_command("hold", store_url, batch_id, "doomed", n))
    assert proc.stdout is not None
    out = BufferedByteReceiveStream(proc.stdout)
    store = await open_store(store_url, batch_id=batch_id)
    try:
        with anyio.fail_after(30):
            line = await read_line(out)
        assert line.startswith("ready"), line
        held = set(line.split()[1:])
        assert len(held) == n
        await anyio.sleep(1.0)  # the live worker renews every 0.1 s
        assert await store.reclaim("rescuer", min_idle=0.8) == []
        await kill(proc)
        await anyio.sleep(1.0)
        taken: list[WorkItem] = await store.reclaim("rescuer", min_idle=0.8)
        assert {item.id for item in taken} == held
        plan: dict[str, int] = {"submit": 0, "uncertain": 0, "track": 0}
        for item in taken:
            job = await store.get(item.key)
            assert job is not None
            if job.state is JobState.PENDING:
                assert await store.claim_intent(item.key, "rescuer")
                plan["submit"] += 1
            elif job.state is JobState.SUBMITTING:
                assert job.owner == "doomed"
                assert await store.transition(item.key, Event.ABANDONED)
                plan["uncertain"] += 1
            else:
                assert job.state is JobState.SUBMITTED and job.generation_id
                plan["track"] += 1
        assert plan == {"submit": 4, "uncertain": 4, "track": 4}
        assert await store.heartbeat("rescuer", taken) == []
        await store.ack("rescuer", taken)
        assert await store.reclaim("third", min_idle=0.0) == []
        counts = await store.counts()
        assert (counts[JobState.SUBMITTING], counts[JobState.UNCERTAIN]) == (4, 4)
        assert counts[JobState.SUBMITTED] == 4
    finally:
        if proc.returncode is None:
            await kill(proc)
        await store.aclose()


@ASYNCIO_ONLY
@pytest.mark.slow
async def test_redis_restart_keeps_every_step(private_redis: RedisServer, batch_id: str) -> None:
    """Redis is SIGKILLed mid-batch and restarted from its AOF: every committed intent, id,
    lease and counter is still there, and the same store object carries on after reconnecting."""
    store = await RedisStore.open(private_redis.url, batch_id=batch_id)
    try:
        reqs = [{"model": "m", "prompt": f"p{i}"} for i in range(20)]
        keys = input_keys(reqs)
        await store.add_inputs(zip(keys, reqs, strict=True))
        items = await store.take_work("w1", count=8)
        for i, key in enumerate(keys[:6]):
            assert await store.claim_intent(key, "w1")
            if i % 2:
                await store.transition(key, Event.SUBMITTED, generation_id=f"g{i}", status="q")
        await store.set_meta("fingerprint", "fp")
        before = await store.jobs()
        counts_before = await store.counts()

        private_redis.kill()
        assert not private_redis.ping()

        async def restart_soon() -> None:
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(private_redis.start)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_soon)
                # issued while the server is down: retried until it is back
                after = await store.jobs()
        assert after == before
        assert await store.counts() == counts_before
        assert await store.get_meta("fingerprint") == "fp"
        for key in keys[:6]:
            assert not await store.claim_intent(key, "w2")
        assert await store.heartbeat("w1", items) == []
        more = await store.take_work("w2", count=100)
        assert {i.key for i in more} == set(keys) - {i.key for i in items}
        assert await store.claim_intent(keys[10], "w2")
    finally:
        await store.aclose()


@ASYNCIO_ONLY
async def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    """Nothing listens on the port: open fails fast with StoreUnavailableError naming the URL,
    never the password; the shared budget does the same."""
    port = free_port()
    url = f"redis://user:s3cr3t-pw@127.0.0.1:{port}/2"
    with anyio.fail_after(10):
        with pytest.raises(StoreUnavailableError) as caught:
            await open_store(url, batch_id="b-1")
        with pytest.raises(StoreUnavailableError) as caught_budget:
            await SharedBudget.open(url, name="k", rate=10)
    for exc in (caught.value, caught_budget.value):
        text = f"{exc} {exc!r} {exc.url}"
        assert f"redis://user@127.0.0.1:{port}/2" in str(exc)
        assert exc.url == f"redis://user@127.0.0.1:{port}/2"
        assert "s3cr3t" not in text and "nothing was submitted" in str(exc)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_redis_store_under_trio_says_it_needs_asyncio(redis_server: RedisServer) -> None:
    """redis.asyncio cannot run on trio: opening a RedisStore there is a clear StoreError."""
    with pytest.raises(StoreError, match="asyncio only"):
        await RedisStore.open(redis_server.url, batch_id="b-1")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_sqlite_calls_never_run_on_the_event_loop_thread(tmp_path: Path) -> None:
    """Every sqlite3 call of SQLiteStore runs in a worker thread, never the loop's."""
    loop_thread = threading.get_ident()
    store = await SQLiteStore.open(tmp_path / "s.sqlite3", batch_id="b")
    seen: list[int] = []
    real = store._conn

    class Spy:
        def __getattr__(self, name: str) -> Any:
            seen.append(threading.get_ident())
            return getattr(real, name)

    store._conn = Spy()  # type: ignore[assignment]
    (key,) = input_keys([{"prompt": "x"}])
    await store.add_inputs([(key, {"prompt": "x"})])
    assert await store.claim_intent(key, "w")
    await store.transition(key, Event.SUBMITTED, generation_id="g", status="q")
    await store.jobs()
    await store.counts()
    await store.take_work("w")
    await store.aclose()
    assert len(seen) >= 7
    assert loop_thread not in seen


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.slow
async def test_sqlite_store_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """A process walking 40 jobs through every step is SIGKILLed at random moments, six times,
    and restarted: the file is intact, no announced step is lost, no job got a second intent,
    and the last run finishes every job."""
    url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    n = 40
    rng = random.Random(15)
    announced: dict[str, set[str]] = {"intent": set(), "submitted": set(), "downloaded": set()}
    finished = False
    kills = 0
    for round_ in range(7):
        proc = await anyio.open_process(worker_command("journal", url, "b-kill", n))
        assert proc.stdout is not None
        out = BufferedByteReceiveStream(proc.stdout)
        budget = rng.randint(3, 25) if round_ < 6 else 10**9
        try:
            with anyio.fail_after(60):
                for _ in range(budget):
                    line = (await read_line(out)).split()
                    if line == ["done"]:
                        finished = True
                        break
                    if line[0] in announced:
                        announced[line[0]].add(line[1])
        except anyio.EndOfStream:
            pass
        finally:
            if proc.returncode is None:
                await kill(proc)
                kills += proc.returncode == -signal.SIGKILL
        # the file after a SIGKILL: intact, and every announced step is in it
        conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        store = await SQLiteStore.open(tmp_path / "jobs.sqlite3", batch_id="b-kill")
        jobs = {j.key: j for j in await store.jobs()}
        await store.aclose()
        for key in announced["intent"]:
            assert jobs[key].state is not JobState.PENDING
            assert jobs[key].attempts == 1
        for key in announced["submitted"]:
            assert jobs[key].generation_id and jobs[key].state in (
                JobState.SUBMITTED,
                JobState.COMPLETED,
                JobState.DOWNLOADED,
            )
        for key in announced["downloaded"]:
            assert jobs[key].state is JobState.DOWNLOADED and jobs[key].size
        assert all(j.attempts <= 1 for j in jobs.values())
        if finished:
            break
    assert finished and kills >= 5
    done = {k for k, j in jobs.items() if j.state is JobState.DOWNLOADED}
    uncertain = {k for k, j in jobs.items() if j.state is JobState.UNCERTAIN}
    # every job is downloaded, except those whose create was in flight at a kill (reported)
    assert len(jobs) == n and done | uncertain == set(jobs) and len(uncertain) <= 6


@ASYNCIO_ONLY
async def test_a_worker_clock_off_by_minutes_changes_nothing_in_redis(
    redis_server: RedisServer, batch_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With this process's clock 10 minutes fast, Redis still stamps jobs with its own time and
    measures lease idleness itself: fresh leases are not reclaimed, stamps are not skewed."""
    real_time = time.time
    store = await RedisStore.open(redis_server.url, batch_id=batch_id)
    try:
        (key,) = input_keys([{"prompt": "skew"}])
        await store.add_inputs([(key, {"prompt": "skew"})])
        monkeypatch.setattr(time, "time", lambda: real_time() + 600.0)
        items = await store.take_work("skewed", count=1)
        assert await store.claim_intent(key, "skewed")
        job = await store.get(key)
        assert job is not None and job.intent_at is not None
        assert abs(job.intent_at - real_time()) < 5
        assert await store.reclaim("other", min_idle=60.0) == []
        assert await store.pending() == {"skewed": 1}
        assert await store.heartbeat("skewed", items) == []
    finally:
        await store.aclose()
