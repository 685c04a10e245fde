"""Batched reads: ``get_many`` on both stores, and the durable batch on a store without it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from veo_async import StoreOptions
from veo_async.stores import JobStore, StoredJob, input_keys
from veo_async.testing import emulated

from .conftest import STORE_KINDS

pytestmark = pytest.mark.anyio


@STORE_KINDS
async def test_get_many_returns_the_jobs_in_the_order_asked_with_none_for_unknown_keys(
    store: JobStore,
) -> None:
    """``get_many`` answers key for key as ``get`` does, in the order given, across chunks."""
    bodies = [{"model": "google/veo-3.1-t2v", "prompt": f"p{i}"} for i in range(1203)]
    keys = input_keys(bodies)
    await store.add_inputs(zip(keys, bodies, strict=True))
    asked = [keys[5], "missing", *reversed(keys[:1200]), keys[5]]
    got = await store.get_many(asked)  # type: ignore[attr-defined]
    assert len(got) == len(asked)
    assert got[1] is None
    for key, job in zip(asked, got, strict=True):
        if key == "missing":
            continue
        assert job is not None and job == await store.get(key)


class _GetOnly:
    """A store that offers only the protocol (no ``get_many``): counts ``get`` calls."""

    def __init__(self, inner: JobStore) -> None:
        self._inner = inner
        self.gets = 0

    async def get(self, key: str) -> StoredJob | None:
        self.gets += 1
        return await self._inner.get(key)

    def __getattr__(self, name: str) -> Any:
        if name == "get_many":
            raise AttributeError(name)
        return getattr(self._inner, name)


@STORE_KINDS
async def test_a_store_without_get_many_still_runs_a_durable_batch(
    store: JobStore, batch_id: str
) -> None:
    """A third-party store with only the protocol's ``get``: every input completes once, and
    each leased job was read with ``get`` (batched reads are an optimisation, not a need)."""
    wrapped = _GetOnly(store)
    prompts = [f"{batch_id} only-get {i}" for i in range(5)]
    opts = StoreOptions(lease_seconds=5, idle_poll=0.05)
    async with emulated(time_scale=0.001) as service:
        with anyio.fail_after(30):
            async with service.client.batch(
                prompts,
                store=wrapped,
                store_options=opts,
            ) as batch:
                results = [r async for r in batch]
        assert sorted(r.index for r in results) == list(range(5))
        assert all(r.ok for r in results)
        assert service.stats()["generations_created"] == 5
    assert wrapped.gets >= 5


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_transition_many_applies_each_change_as_transition_would(
    redis_server: Any, batch_id: str
) -> None:
    """``RedisStore.transition_many``: one pipeline, each change checked by the same rules as
    ``transition`` (a change its state does not allow is refused, the others applied)."""
    from veo_async.stores import Event, JobState, RedisStore

    store = await RedisStore.open(redis_server.url, batch_id=batch_id)
    try:
        bodies = [{"model": "google/veo-3.1-t2v", "prompt": f"tm{i}"} for i in range(3)]
        keys = input_keys(bodies)
        await store.add_inputs(zip(keys, bodies, strict=True))
        for key in keys[:2]:
            assert await store.claim_intent(key, "w")
        applied = await store.transition_many(
            [
                (keys[0], Event.SUBMITTED, {"generation_id": "g0", "status": "queued"}),
                (keys[1], Event.UNCERTAIN, {"error": "lost"}),
                (keys[2], Event.UNCERTAIN, {"error": "never claimed"}),
            ]
        )
        assert applied == [True, True, False]
        jobs = await store.get_many(keys)
        assert [j.state if j else None for j in jobs] == [
            JobState.SUBMITTED,
            JobState.UNCERTAIN,
            JobState.PENDING,
        ]
        assert jobs[0] is not None and jobs[0].generation_id == "g0"
        counts = await store.counts()
        assert counts[JobState.SUBMITTED] == 1 and counts[JobState.UNCERTAIN] == 1
        assert await store.transition_many([]) == []
        leased = await store.take_work("w", count=3)
        assert await store.transition_many([], worker="w", ack=leased) == []
        assert sum((await store.pending()).values()) == 0
    finally:
        await store.aclose()


@STORE_KINDS
async def test_results_finishing_together_are_recorded_together_each_before_it_is_seen(
    store_url: str, batch_id: str
) -> None:
    """40 ids tracked through the store and finished before the batch starts: every one is
    reported once and recorded as completed before the caller sees it, no lease is left open,
    and on Redis the results that waited together were recorded in one round trip."""
    from veo_async import BatchItem
    from veo_async.stores import JobState, open_store

    async with emulated(time_scale=0.001) as service:
        ids = [
            (await service.client.submit(prompt=f"{batch_id} together {i}")).id for i in range(40)
        ]
        await anyio.sleep(0.5)  # every generation finished on the emulator (45 s x 0.001)
        items = [BatchItem(generation_id=gid) for gid in ids]
        opts = StoreOptions(batch_id=batch_id, lease_seconds=5, idle_poll=0.05, lease_batch=40)
        seen: list[str] = []
        opened = await open_store(store_url, batch_id=batch_id)
        sizes: list[int] = []
        many = getattr(opened, "transition_many", None)
        if many is not None:

            async def counting(changes: Any, **ack: Any) -> list[bool]:
                sizes.append(len(changes))
                applied: list[bool] = await many(changes, **ack)
                return applied

            opened.transition_many = counting  # type: ignore[attr-defined]
        with anyio.fail_after(30):
            async with service.client.batch(items, store=opened, store_options=opts) as b:
                await anyio.sleep(1.0)  # the results wait together for the caller
                async for result in b:
                    assert result.ok
                    assert result.generation_id is not None
                    seen.append(result.generation_id)
                    # recorded before the caller sees it
                    assert b.store is not None
                    job = await b.store.get(str(result.key))
                    assert job is not None and job.state is JobState.COMPLETED
        assert sorted(seen) == sorted(ids)
        assert service.stats()["generations_created"] == 40
        if many is not None:  # Redis: fewer round trips than results, each result once
            assert sum(sizes) == 40 and len(sizes) < 40
        await opened.aclose()
    store = await open_store(store_url, batch_id=batch_id)
    try:
        assert (await store.counts())[JobState.COMPLETED] == 40
        pending = getattr(store, "pending", None)
        if pending is not None:
            assert sum((await pending()).values()) == 0
    finally:
        await store.aclose()


@STORE_KINDS
async def test_a_caller_that_stops_in_a_burst_loses_none_of_it_to_the_rerun(
    store_url: str, batch_id: str
) -> None:
    """Ids that finished together are recorded together; the caller stops after the first
    result. A rerun reports every other one (as settled jobs from the store): each id reported
    exactly once across the two runs, none created again."""
    from veo_async import BatchItem

    async with emulated(time_scale=0.001) as service:
        ids = [(await service.client.submit(prompt=f"{batch_id} burst {i}")).id for i in range(12)]
        await anyio.sleep(0.5)  # every generation finished on the emulator (45 s x 0.001)
        items = [BatchItem(generation_id=gid) for gid in ids]
        opts = StoreOptions(
            batch_id=batch_id, worker="w1", lease_seconds=0.5, idle_poll=0.05, lease_batch=12
        )
        seen: list[str] = []
        with anyio.fail_after(30):
            async with service.client.batch(items, store=store_url, store_options=opts) as b:
                await anyio.sleep(1.0)  # every result is waiting when the caller first asks
                async for result in b:
                    assert result.generation_id is not None
                    seen.append(result.generation_id)
                    break
        from veo_async.stores import JobState, open_store

        store = await open_store(store_url, batch_id=batch_id)
        try:  # more were recorded than returned: the burst went to the store in one call
            assert (await store.counts())[JobState.COMPLETED] > 1
        finally:
            await store.aclose()
        again = StoreOptions(batch_id=batch_id, worker="w2", lease_seconds=0.5, idle_poll=0.05)
        with anyio.fail_after(30):
            async with service.client.batch([], store=store_url, store_options=again) as b:
                async for result in b:
                    assert result.ok and result.generation_id is not None
                    seen.append(result.generation_id)
        assert sorted(seen) == sorted(ids)  # each once, none lost
        assert service.stats()["generations_created"] == 12


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_transition_many_reloads_scripts_a_restarted_server_lost(
    redis_server: Any, batch_id: str
) -> None:
    """``transition_many`` sends its scripts by hash, without a ``SCRIPT EXISTS`` round trip;
    a server that lost them (``SCRIPT FLUSH``, as after a restart) gets them loaded again and
    the changes are applied once."""
    from veo_async.stores import Event, JobState, RedisStore

    store = await RedisStore.open(redis_server.url, batch_id=batch_id)
    try:
        bodies = [{"model": "google/veo-3.1-t2v", "prompt": f"flush{i}"} for i in range(2)]
        keys = input_keys(bodies)
        await store.add_inputs(zip(keys, bodies, strict=True))
        for key in keys:
            assert await store.claim_intent(key, "w")
        await store._r.script_flush()
        applied = await store.transition_many(
            [(key, Event.SUBMITTED, {"generation_id": f"g{i}"}) for i, key in enumerate(keys)]
        )
        assert applied == [True, True]
        counts = await store.counts()
        assert counts[JobState.SUBMITTED] == 2 and counts[JobState.SUBMITTING] == 0
    finally:
        await store.aclose()
