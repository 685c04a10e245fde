"""The shared request budget: one Redis reservation schedule (GCRA) for many processes, and a
shared pace."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from veo_async.stores import SharedBudget, StoreError, budget_name

from .conftest import ASYNCIO_ONLY, RedisServer, worker_command

pytestmark = pytest.mark.anyio


def test_budget_name_hides_the_key() -> None:
    """The budget's name is derived from the API key without containing it."""
    name = budget_name("sk-very-secret")
    assert "secret" not in name and name == budget_name("sk-very-secret")
    assert name != budget_name("sk-other")


RATE, SPAN = 10.0, 3.0
"""The rate (grants per second) and the seconds over which grants are counted."""


def check_schedule(grants: list[float], rate: float, span: float) -> None:
    """``grants`` (times, any order) hold ``rate x span`` (+-1) in the ``span`` seconds after
    the first, and none came ahead of the schedule: the k-th is at least ``k / rate`` after
    the first (less 20 ms for the reply's own latency)."""
    grants = sorted(grants)
    t0 = grants[0]
    within = [t - t0 for t in grants if t - t0 < span]
    assert abs(len(within) - rate * span) <= 1, (len(within), within)
    for k, offset in enumerate(within):
        assert offset >= k / rate - 0.02, (k, offset)


async def run_bucket_workers(
    url: str, name: str, burst: float, takers: int, skews: list[float], span: float
) -> list[list[float]]:
    """One ``_worker.py bucket`` process per skew, released together; each one's grant times."""
    procs = [
        await anyio.open_process(
            worker_command("bucket", url, name, RATE, burst, span, takers, skew)
        )
        for skew in skews
    ]
    outputs: list[str] = []
    try:
        with anyio.fail_after(60):
            streams = []
            for proc in procs:
                assert proc.stdout is not None and proc.stdin is not None
                stream = BufferedByteReceiveStream(proc.stdout)
                assert await stream.receive_until(b"\n", 100) == b"ready"
                streams.append(stream)
            for proc in procs:  # all connected: go together
                assert proc.stdin is not None
                await proc.stdin.send(b"go\n")
            for proc, stream in zip(procs, streams, strict=True):
                chunks = [stream.buffer]
                assert proc.stdout is not None
                async for chunk in proc.stdout:
                    chunks.append(chunk)
                outputs.append(b"".join(chunks).decode())
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert all(out.rstrip().endswith("done") for out in outputs)
    return [
        [float(line.split()[1]) for line in out.splitlines() if line[:3] == "ok "]
        for out in outputs
    ]


@ASYNCIO_ONLY
async def test_concurrent_takers_in_one_process_get_the_rate_spaced(
    redis_server: RedisServer,
) -> None:
    """8 tasks of one process acquire from a 10/s budget (burst 1) as fast as they can: in 3 s
    they get 30 +- 1 grants, none ahead of its 1/rate slot."""
    name = "t-" + uuid.uuid4().hex[:8]
    grants: list[float] = []
    async with await SharedBudget.open(redis_server.url, name=name, rate=RATE) as budget:

        async def taker() -> None:
            while True:
                await budget.acquire()
                grants.append(time.monotonic())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(taker)
                await anyio.sleep(SPAN + 0.5)
                tg.cancel_scope.cancel()
    check_schedule(grants, RATE, SPAN)


@ASYNCIO_ONLY
@pytest.mark.slow
async def test_three_processes_share_one_10_per_second_budget(redis_server: RedisServer) -> None:
    """3 processes x 4 takers acquire as fast as they can from one 10/s budget (burst 1): in
    3 s they get 30 +- 1 grants together, spaced right, and every process gets some."""
    name = "t-" + uuid.uuid4().hex[:8]
    per_process = await run_bucket_workers(
        redis_server.url, name, 1.0, 4, [0.0, 0.0, 0.0], SPAN + 0.5
    )
    assert all(len(grants) >= 5 for grants in per_process), [len(g) for g in per_process]
    check_schedule([t for grants in per_process for t in grants], RATE, SPAN)


@ASYNCIO_ONLY
@pytest.mark.slow
async def test_processes_whose_clocks_are_off_by_minutes_share_one_schedule(
    redis_server: RedisServer,
) -> None:
    """Two processes whose wall and monotonic clocks are 5 minutes ahead and 5 minutes behind
    share one 10/s budget as if their clocks agreed (the schedule runs on Redis's clock)."""
    name = "t-" + uuid.uuid4().hex[:8]
    per_process = await run_bucket_workers(
        redis_server.url, name, 1.0, 2, [300.0, -300.0], SPAN + 0.5
    )
    assert all(len(grants) >= 5 for grants in per_process), [len(g) for g in per_process]
    check_schedule([t for grants in per_process for t in grants], RATE, SPAN)


@ASYNCIO_ONLY
async def test_a_late_waker_does_not_lower_the_rate(redis_server: RedisServer) -> None:
    """A taker that always wakes 60 % of a slot late (a loaded event loop) still gets the
    budget's full rate from reservations (30 +- 1 in 3 s at 10/s, burst 1); the same taker
    polling try_acquire() loses that lateness on every grant (the old refuse-and-retry)."""
    late = 0.6 / RATE
    reserved: list[float] = []
    polled: list[float] = []
    async with (
        await SharedBudget.open(
            redis_server.url, name="t-" + uuid.uuid4().hex[:8], rate=RATE
        ) as first,
        await SharedBudget.open(
            redis_server.url, name="t-" + uuid.uuid4().hex[:8], rate=RATE
        ) as second,
    ):
        with anyio.fail_after(30):
            stop = time.monotonic() + SPAN + 0.3
            while time.monotonic() < stop:
                wait = await first.reserve()
                await anyio.sleep(wait + late)
                reserved.append(time.monotonic())
            stop = time.monotonic() + SPAN + 0.3
            while time.monotonic() < stop:
                wait = await second.try_acquire()
                if wait > 0:
                    await anyio.sleep(wait + late)
                    continue
                polled.append(time.monotonic())
    check_schedule(reserved, RATE, SPAN)
    assert len([t for t in polled if t - polled[0] < SPAN]) <= RATE * SPAN * 0.75


@ASYNCIO_ONLY
async def test_a_cancelled_taker_loses_its_slot_and_holds_no_one_back(
    redis_server: RedisServer,
) -> None:
    """A taker cancelled while sleeping on its slot loses it (the next taker is scheduled
    after it, not in it) and the schedule goes on: nothing is stuck."""
    name = "t-" + uuid.uuid4().hex[:8]
    async with await SharedBudget.open(redis_server.url, name=name, rate=2.0) as budget:
        with anyio.fail_after(10):
            await budget.acquire()  # slot 0, now
            with anyio.move_on_after(0.1) as scope:
                await budget.acquire()  # slot 1, at +0.5 s: cancelled while sleeping on it
            assert scope.cancelled_caught
            wait = await budget.reserve()  # slot 2, at +1.0 s
            assert 0.8 <= wait <= 0.95, wait
            await anyio.sleep(wait)
            t0 = time.monotonic()
            await budget.acquire()  # slot 3, 0.5 s later: the schedule runs on
            assert 0.4 <= time.monotonic() - t0 <= 0.6


@ASYNCIO_ONLY
async def test_slots_are_never_booked_further_than_max_ahead(redis_server: RedisServer) -> None:
    """20 takers reserve at once from a 10/s budget with max_ahead 0.5 s and never use their
    slots (they crashed): none was promised a slot more than 0.5 s + one slot ahead (the
    later ones waited before booking), and a new taker then waits at most about that long."""
    name = "t-" + uuid.uuid4().hex[:8]
    slots: list[tuple[float, float]] = []
    async with await SharedBudget.open(
        redis_server.url, name=name, rate=RATE, max_ahead=0.5
    ) as budget:

        async def crashed() -> None:
            wait = await budget.reserve()
            slots.append((wait, time.monotonic() + wait))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(crashed)
            assert len(slots) == 20
            assert max(wait for wait, _ in slots) <= 0.5 + 1 / RATE + 0.02
            wait = await budget.reserve()
            # the crashed takers' slots are not handed out again, yet the wait is bounded
            assert 0.3 <= wait <= 0.5 + 1 / RATE + 0.02, wait


@ASYNCIO_ONLY
async def test_a_published_pace_slows_everyone_until_it_expires(redis_server: RedisServer) -> None:
    """A pace published by one process lowers the bucket's rate for another; after its TTL the
    configured rate is back; shared_pace() reads it."""
    name = "t-" + uuid.uuid4().hex[:8]
    async with (
        await SharedBudget.open(redis_server.url, name=name, rate=50, burst=1) as fast,
        await SharedBudget.open(redis_server.url, name=name, rate=50, burst=1) as learner,
    ):
        assert await fast.shared_pace() is None
        await learner.publish_pace(4.0, ttl=1.2)
        assert await fast.shared_pace() == 4.0
        with anyio.fail_after(10):
            t0 = time.monotonic()
            for _ in range(5):
                await fast.acquire()
            slow = time.monotonic() - t0
        assert slow >= 0.9  # 4 waits of 1/4 s: about 1 s instead of 0.08 s
        await anyio.sleep(max(0.0, 1.3 - slow))
        assert await fast.shared_pace() is None
        with anyio.fail_after(10):
            t0 = time.monotonic()
            for _ in range(5):
                await fast.acquire()
            quick = time.monotonic() - t0
        assert quick < 0.5
        with pytest.raises(StoreError):
            await learner.publish_pace(0)


@ASYNCIO_ONLY
async def test_try_acquire_reports_the_wait_and_takes_nothing(redis_server: RedisServer) -> None:
    """With the bucket empty, try_acquire says how long to wait and takes no token."""
    name = "t-" + uuid.uuid4().hex[:8]
    async with await SharedBudget.open(redis_server.url, name=name, rate=2, burst=2) as budget:
        assert await budget.try_acquire() == 0.0
        assert await budget.try_acquire() == 0.0
        wait = await budget.try_acquire()
        assert 0.3 < wait <= 0.5
        second = await budget.try_acquire()
        assert 0.3 < second <= wait  # the refused call did not consume anything
