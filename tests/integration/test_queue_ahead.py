"""Paying ahead (``BatchOptions.queue_ahead``) over real sockets against the emulator.

The ledger is the referee: when each generation was created (paid) and when the emulator
started it. With the cap, at most about one wave of the server's concurrency waits paid and
not started; without it, nearly every input does. Every input is delivered either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from benchmarks.vs_script import paid_not_started_max
from veo_async import AsyncVeoClient, RetryConfig
from veo_async.emulator import EmulatorConfig, EmulatorServer

SCALE = 0.04
SLOTS = 32
N = 128
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One emulator server for this module."""
    with EmulatorServer(EmulatorConfig(time_scale=SCALE)) as srv:
        yield srv


@pytest.fixture(params=[False, True], ids=["httpx", "aiohttp"])
def fast_transport(request: pytest.FixtureRequest, anyio_backend: str) -> bool:
    """httpx on both backends, the aiohttp transport on asyncio only."""
    if request.param and anyio_backend != "asyncio":
        pytest.skip("the aiohttp transport runs on asyncio only")
    return bool(request.param)


async def run(srv: EmulatorServer, fast: bool, **options: Any) -> tuple[int, int, int]:
    """``N`` jobs on a ``SLOTS``-slot server: (results ok, POSTs, most held back)."""
    srv.reset()
    srv.configure(time_scale=SCALE, max_concurrent=SLOTS, seed=3)
    retry = RetryConfig(initial_backoff=0.005, max_backoff=0.05)
    ok = 0
    async with AsyncVeoClient(
        "key", base_url=srv.base_url, time_scale=SCALE, retry=retry, fast_transport=fast
    ) as client:
        with anyio.fail_after(60):
            async with client.batch([f"ahead {i}" for i in range(N)], **options) as batch:
                async for result in batch:
                    ok += result.ok
    stats = srv.stats()
    queue_delay = 1.0 * SCALE  # the emulator's default: every job waits that long anyway
    held = paid_not_started_max(stats["generations"], queue_delay + 1e-4)
    return ok, int(stats["create_requests"]), held


@pytest.mark.anyio
async def test_one_wave_ahead_bounds_the_paid_but_not_started_jobs(
    server: EmulatorServer, fast_transport: bool
) -> None:
    """Default ``queue_ahead=1``: at most about one wave (32) waits paid for a slot at any
    moment (plus half a wave: the learned concurrency can run high while it settles; with no
    cap up to N - 32 = 96 do, as fast as this machine sends creates). Every input delivered,
    each created exactly once."""
    ok, posts, held = await run(server, fast_transport)
    assert ok == N and posts == N
    assert held <= SLOTS * 1.5


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_queue_ahead_must_be_a_finite_number_of_waves(bad: float) -> None:
    """A negative, NaN or infinite margin is refused when the options are made."""
    from veo_async import BatchOptions

    with pytest.raises(ValueError, match="queue_ahead"):
        BatchOptions(queue_ahead=bad)
    with pytest.raises(TypeError, match="queue_ahead"):
        BatchOptions(queue_ahead=True)
