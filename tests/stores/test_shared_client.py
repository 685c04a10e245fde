"""Three client processes on one key against a rate-limited emulator: a shared budget keeps
their 429s far below what three independent clients draw (the emulator's ledger counts)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from veo_async import AsyncVeoClient, ConfigurationError, _timing
from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.ratelimit import PaceState, RateGovernor
from veo_async.ratelimit._governor import SHARED_PACE_READ_SECONDS
from veo_async.stores import SharedBudget
from veo_async.stores._redis import connect_redis

from ..test_ratelimit import Bucket, FakeClock, drive
from .conftest import ASYNCIO_ONLY, RedisServer, free_port

pytestmark = pytest.mark.anyio

CLIENT_WORKER = str(Path(__file__).with_name("_client_worker.py"))
ALONE_KEY, SHARED_KEY = "sk-independent-clients", "sk-shared-budget-clients"
RATE, SERVER_BURST, BUDGET_BURST = 20.0, 3.0, 1.0
PROCESSES, REQUESTS, CONCURRENCY = 3, 30, 4
TIME_SCALE = 0.5


Group = list[tuple[Process, BufferedByteReceiveStream]]


async def _start_three(server: EmulatorServer, key: str, redis_url: str) -> Group:
    """Create a generation for ``key``, start the client processes (a fresh budget name) that
    poll it and wait until each is ready."""
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            server.base_url + "/v2/video/generations",
            json={"model": "veo2", "prompt": f"shared budget {key}"},
            headers={"Authorization": f"Bearer {key}"},
        )
        reply.raise_for_status()
        gid = reply.json()["id"]
    name = "t-" + uuid.uuid4().hex[:8]
    command = [
        sys.executable,
        CLIENT_WORKER,
        server.base_url,
        redis_url,
        name,
        str(RATE),
        str(BUDGET_BURST),
        str(REQUESTS),
        str(CONCURRENCY),
        gid,
        str(TIME_SCALE),
        key,
    ]
    procs = [await anyio.open_process(command) for _ in range(PROCESSES)]
    group = []
    for proc in procs:
        assert proc.stdout is not None
        group.append((proc, BufferedByteReceiveStream(proc.stdout)))
    for _, stream in group:
        assert await stream.receive_until(b"\n", 1000) == b"ready"
    return group


async def _run_three(server: EmulatorServer, group: Group) -> tuple[int, float, list[str]]:
    """Release the ready processes together: the emulator's 429s during the run and the
    slowest process's seconds."""
    before = server.stats(include_generations=False)
    for proc, _ in group:
        assert proc.stdin is not None
        await proc.stdin.send(b"go\n")
    slowest, seen, paces = 0.0, 0, []
    for proc, stream in group:
        line = (await stream.receive_until(b"\n", 1000)).decode().split()
        assert line[0] == "done", line
        slowest = max(slowest, float(line[1]))
        seen += int(line[2])
        paces.append(line[3])
        assert await proc.wait() == 0
    after = server.stats(include_generations=False)
    polls = after["poll_requests"] - before["poll_requests"]
    limited = after["rate_limited"] - before["rate_limited"]
    assert polls - limited >= PROCESSES * REQUESTS  # every request answered in the end
    assert seen == limited  # the clients saw every 429 the emulator counted, no more
    return limited, slowest, paces


@ASYNCIO_ONLY
@pytest.mark.slow
async def test_shared_budget_keeps_three_processes_under_the_servers_limit(
    redis_server: RedisServer,
) -> None:
    """3 processes x 30 status requests at a 20/s server limit: with a SharedBudget at 20/s
    the emulator refuses far fewer requests (429) than with 3 independent clients."""
    # time_scale 0.5: the limit is RATE real requests/s and Retry-After comes in fractions
    # of a second (at time_scale 1 it is rounded up to whole seconds)
    config = EmulatorConfig(
        rate_limit=RATE * TIME_SCALE, rate_limit_burst=SERVER_BURST, time_scale=TIME_SCALE
    )
    # one emulator per group (each with its own ledger), so both groups run at once
    with EmulatorServer(config) as alone_server, EmulatorServer(config) as shared_server:
        with anyio.fail_after(90):
            alone = await _start_three(alone_server, ALONE_KEY, "-")
            together = await _start_three(shared_server, SHARED_KEY, redis_server.url)
            results: dict[str, tuple[int, float, list[str]]] = {}

            async def run(label: str, server: EmulatorServer, group: Group) -> None:
                results[label] = await _run_three(server, group)

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run, "alone", alone_server, alone)
                    tg.start_soon(run, "shared", shared_server, together)
            finally:
                for proc, _ in alone + together:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
        assert created_once(alone_server) and created_once(shared_server)
    independent, independent_s, alone_paces = results["alone"]
    shared, shared_s, shared_paces = results["shared"]
    print(
        f"\n429s: independent {independent} ({independent_s:.1f} s, paces {alone_paces}), "
        f"shared budget {shared} ({shared_s:.1f} s, paces {shared_paces})"
    )
    assert independent >= 10
    assert shared * 5 <= independent
    # the shared run is not slower than the server's rate allows (+ generous slack)
    assert shared_s <= PROCESSES * REQUESTS / RATE * 2 + 2


def created_once(server: EmulatorServer) -> bool:
    """The setup's one create is the only generation (status requests create nothing)."""
    return bool(server.stats(include_generations=False)["generations_created"] == 1)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_shared_budget_on_trio_is_a_clear_configuration_error() -> None:
    """On trio a client with a shared budget raises ConfigurationError at its first request,
    before anything is sent (the budget's Redis client is never touched)."""

    class Unused:
        """Stands in for a SharedBudget; any use of it would fail the test."""

        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the budget was used: {name}")

    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    budget: SharedBudget = Unused()  # type: ignore[assignment]
    async with http, AsyncVeoClient("sk-x", http_client=http, shared_budget=budget) as client:
        with pytest.raises(ConfigurationError, match="asyncio only"):
            await client.get("gen-1")
    assert requests == []


class CountingBudget(SharedBudget):
    """A real SharedBudget that counts how often the pace is read and what is published."""

    reads = 0
    published: list[float]

    async def shared_pace(self) -> float | None:
        """Count, then read from Redis."""
        self.reads += 1
        return await super().shared_pace()

    async def publish_pace(self, rps: float, *, ttl: float = 60.0) -> None:
        """Record, then publish to Redis."""
        self.published.append(rps)
        await super().publish_pace(rps, ttl=ttl)


async def _counting_budget(url: str, name: str, rate: float) -> CountingBudget:
    budget = CountingBudget(connect_redis(url), name=name, rate=rate, burst=1000)
    budget.published = []
    return budget


@ASYNCIO_ONLY
async def test_governor_adopts_a_lower_published_pace_reading_it_rarely(
    redis_server: RedisServer,
) -> None:
    """A pace another process published is adopted by a governor with the same budget, and the
    pace is read once per few seconds, not on each of 200 requests."""
    name = "t-" + uuid.uuid4().hex[:8]
    other = await _counting_budget(redis_server.url, name, 1000.0)
    mine = await _counting_budget(redis_server.url, name, 1000.0)
    try:
        await other.publish_pace(400.0)
        governor = RateGovernor(shared_budget=mine)
        started = anyio.current_time()
        with anyio.fail_after(10):
            for _ in range(200):
                await governor.acquire()
        assert governor.rate == 400.0 and governor.state == PaceState.SETTLED
        if anyio.current_time() - started < SHARED_PACE_READ_SECONDS:
            assert mine.reads == 1
        assert mine.published == []  # an adopted pace is not published back
    finally:
        await other.aclose()
        await mine.aclose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Route ``_timing.monotonic``/``sleep`` through a fake clock (Redis keeps real time)."""
    fake = FakeClock()
    monkeypatch.setattr(_timing, "monotonic", fake.monotonic)
    monkeypatch.setattr(_timing, "sleep", fake.sleep)
    return fake


@ASYNCIO_ONLY
async def test_governor_publishes_the_pace_it_learned(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    """A governor that learns a 10/s server limit from 429s publishes its pace; a second
    governor on the same budget then starts at that pace without having seen a 429."""
    name = "t-" + uuid.uuid4().hex[:8]
    first = await _counting_budget(redis_server.url, name, 1e6)
    second = await _counting_budget(redis_server.url, name, 1e6)
    try:
        learner = RateGovernor(shared_budget=first)
        server = Bucket(clock, rate=10.0, capacity=10.0)
        with anyio.fail_after(20):
            await drive(learner, clock, 60.0, demand=50.0, admit=server.take)
        learned = learner.learned_rate
        assert learned is not None and 9.0 <= learned <= 10.5 and learner.lowered >= 1
        assert first.published and 9.0 <= first.published[-1] <= 10.5
        shared = await second.shared_pace()
        assert shared is not None and 9.0 <= shared <= 10.5
        follower = RateGovernor(shared_budget=second)
        await follower.acquire()
        assert follower.rate == shared and follower.rate_limited == 0
    finally:
        await first.aclose()
        await second.aclose()


@ASYNCIO_ONLY
async def test_without_redis_the_governor_paces_locally() -> None:
    """A shared budget whose Redis is gone does not fail requests: they go on with local
    pacing only; the failure is counted and Redis is not asked again on every request."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    budget = SharedBudget(connect_redis(url, reconnect_attempts=0), name="t-gone", rate=10.0)
    governor = RateGovernor(shared_budget=budget)
    try:
        with anyio.fail_after(10):
            for _ in range(50):
                await governor.acquire()
        assert governor.shared_failures == 1
    finally:
        await budget.aclose()


@ASYNCIO_ONLY
async def test_a_pace_learned_from_a_share_is_published_for_the_whole_key(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    """With two processes drawing on one budget, a governor that learns 5/s from its 429s
    learned its *share*: it publishes 2 x 5/s for the key, so the others do not all drop to
    one share (the collapse the 4-process benchmark showed)."""
    name = "t-" + uuid.uuid4().hex[:8]
    first = await _counting_budget(redis_server.url, name, 1e6)
    other = await _counting_budget(redis_server.url, name, 1e6)
    try:
        await other.acquire()  # a second process is drawing on the budget
        assert await first.members() == 1  # only budgets that took tokens count
        learner = RateGovernor(shared_budget=first)
        server = Bucket(clock, rate=5.0, capacity=5.0)
        with anyio.fail_after(20):
            await other.acquire()
            await drive(learner, clock, 60.0, demand=50.0, admit=server.take)
        assert await first.members() == 2
        learned = learner.learned_rate
        assert learned is not None and 4.5 <= learned <= 5.25
        assert first.published and 9.0 <= first.published[-1] <= 10.5
    finally:
        await first.aclose()
        await other.aclose()
