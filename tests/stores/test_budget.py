"""The shared request budget: one Redis token bucket for many processes, and a shared pace."""

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


@ASYNCIO_ONLY
@pytest.mark.slow
async def test_three_processes_share_one_10_per_second_budget(redis_server: RedisServer) -> None:
    """3 processes acquire as fast as they can for 3 s from one 10/s bucket (burst 5): together
    they are admitted at most burst + 10/s x elapsed (+1), and the budget is not wasted."""
    name = "t-" + uuid.uuid4().hex[:8]
    rate, burst, span = 10.0, 5.0, 3.0
    procs = [
        await anyio.open_process(
            worker_command("bucket", redis_server.url, name, rate, burst, span)
        )
        for _ in range(3)
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
                await proc.wait()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    grants = sorted(
        float(line.split()[1]) for out in outputs for line in out.splitlines() if line[:3] == "ok "
    )
    assert all(out.rstrip().endswith("done") for out in outputs)
    per_process = [out.count("ok ") for out in outputs]
    elapsed = grants[-1] - grants[0]
    assert len(grants) <= burst + rate * elapsed + 1, (len(grants), elapsed)
    assert len(grants) >= rate * elapsed * 0.8, (len(grants), elapsed)
    assert all(n > 0 for n in per_process), per_process
    # no one-second window anywhere holds more than burst + rate grants
    for i, t in enumerate(grants):
        window = sum(1 for u in grants[i:] if u - t < 1.0)
        assert window <= burst + rate + 1


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
