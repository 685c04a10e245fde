"""The durable batch's lease pipeline: rounds sized to the engine, ids polled at once, and
leases that never reached the engine given back on exit."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from veo_async import BatchItem, StoreOptions
from veo_async.batch._durable import LEASE_HORIZON, LEASE_MAX, next_lease_size
from veo_async.stores import JobState, JobStore, WorkItem, open_store
from veo_async.testing import emulated

from .conftest import STORE_KINDS

pytestmark = pytest.mark.anyio


def test_the_lease_round_follows_the_engines_intake_within_its_bounds() -> None:
    """Ids taken in at once grow the round to the ceiling; creates at a few per second keep
    it at the floor; a middling pace gives what it takes in within the horizon."""
    assert next_lease_size(8, 0.001, floor=8) == LEASE_MAX
    assert next_lease_size(8, 0.0, floor=8) == LEASE_MAX
    assert next_lease_size(8, 2.0, floor=8) == 8  # 4 creates per second
    assert next_lease_size(100, 1.0, floor=8) == int(100 * LEASE_HORIZON)
    assert next_lease_size(8, 0.001, floor=8, ceiling=20) == 20
    assert next_lease_size(1, 100.0, floor=3) == 3


class _CountingTakes:
    """A store that records the ``count`` asked and the number of jobs each
    ``take_work`` call brought."""

    def __init__(self, inner: JobStore) -> None:
        self._inner = inner
        self.takes: list[tuple[int, int]] = []

    async def take_work(self, worker: str, *, count: int = 1, wait: float = 0.0) -> list[WorkItem]:
        items = await self._inner.take_work(worker, count=count, wait=wait)
        self.takes.append((count, len(items)))
        return items

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@STORE_KINDS
async def test_ids_that_already_ended_are_leased_in_few_rounds_and_polled_once_each(
    store: JobStore, batch_id: str
) -> None:
    """600 ids that finished before tracking starts: every one is reported once, each with
    exactly one status request (an overdue tracked id is polled at once, not on a schedule),
    and the jobs were leased in a handful of store calls, not 600 / lease_batch."""
    counting = _CountingTakes(store)
    async with emulated(time_scale=0.001) as service:
        ids = [(await service.client.submit(prompt=f"{batch_id} over {i}")).id for i in range(600)]
        await anyio.sleep(0.5)  # every generation finished on the emulator (45 s x 0.001)
        polls_before = service.stats()["poll_requests"]
        opts = StoreOptions(lease_seconds=30, idle_poll=0.05, lease_batch=8)
        items = [BatchItem(generation_id=gid) for gid in ids]
        with anyio.fail_after(60):
            async with service.client.batch(items, store=counting, store_options=opts) as b:
                seen = [r.generation_id async for r in b if r.ok]
        assert sorted(g or "" for g in seen) == sorted(ids)
        assert service.stats()["poll_requests"] - polls_before == 600
    rounds = [asked for asked, got in counting.takes if got]
    assert sum(got for _, got in counting.takes) == 600
    assert len(rounds) <= 8, counting.takes  # 75 rounds of 8 before
    assert max(rounds) > 8  # the round grew past lease_batch
    assert (await store.counts())[JobState.COMPLETED] == 600


@STORE_KINDS
async def test_leases_that_never_reached_the_engine_go_back_when_the_caller_stops(
    store_url: str, batch_id: str
) -> None:
    """One round leases all 30 inputs, the engine (one create at a time) takes a few, and
    the caller stops after its first result: the jobs the engine never took are free for any
    worker at once (long before ``lease_seconds``), the others stay with their worker, and
    none was created twice."""
    opts = StoreOptions(
        batch_id=batch_id, worker="first", lease_seconds=60, idle_poll=0.05, lease_batch=30
    )
    prompts = [f"{batch_id} give back {i}" for i in range(30)]
    async with emulated(time_scale=0.001) as service:
        with anyio.fail_after(30):
            async with service.client.batch(
                prompts, store=store_url, store_options=opts, max_concurrency=1
            ) as b:
                async for result in b:
                    assert result.ok
                    break
        created = service.stats()["generations_created"]
        assert 1 <= created < 30
    store = await open_store(store_url, batch_id=batch_id)
    try:
        with anyio.fail_after(5):
            free = await store.take_work("probe", count=100)
        jobs = await store.get_many([item.key for item in free])  # type: ignore[attr-defined]
        states = [job.state if job is not None else None for job in jobs]
        # never sent: pending (a result recorded but not returned is given back completed)
        assert states.count(JobState.PENDING) >= 30 - created - 2
        assert set(states) <= {JobState.PENDING, JobState.COMPLETED}
        assert len({item.key for item in free}) == len(free)
        pending = getattr(store, "pending", None)
        if pending is not None:  # Redis: the rest are still leased to "first"
            held = (await pending()).get("first", 0)
            assert held + len(free) + 1 == 30
    finally:
        await store.aclose()


@STORE_KINDS
async def test_inputs_to_create_are_leased_lease_batch_at_a_time(
    store: JobStore, batch_id: str
) -> None:
    """Inputs to create never grow the round past ``lease_batch`` (however fast the engine
    admits them): the work stays spread over the workers; every input is created once."""
    counting = _CountingTakes(store)
    prompts = [f"{batch_id} spread {i}" for i in range(40)]
    opts = StoreOptions(lease_seconds=30, idle_poll=0.05, lease_batch=4)
    async with emulated(time_scale=0.001) as service:
        with anyio.fail_after(60):
            async with service.client.batch(prompts, store=counting, store_options=opts) as b:
                results = [r async for r in b]
        assert sorted(r.index for r in results) == list(range(40))
        assert all(r.ok for r in results)
        assert service.stats()["generations_created"] == 40
    assert max(asked for asked, _ in counting.takes) <= 4
    assert sum(got for _, got in counting.takes) == 40
