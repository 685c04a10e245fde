"""``client.batch(inputs, store=...)``: a batch whose jobs live in a store, against the
emulator (its ledger is the truth: generations created, duplicate prompts).

SQLite runs on asyncio and trio, Redis (a real redis-server) on asyncio.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from veo_async import (
    BatchInput,
    BatchItem,
    BatchResult,
    CreateOutcomeUnknownError,
    DurableBatch,
    RequestValidationError,
    StoreOptions,
)
from veo_async.stores import JobState, JobStore, StoreUnavailableError, input_keys, open_store
from veo_async.testing import emulated

from .conftest import ASYNCIO_ONLY, STORE_KINDS, free_port

pytestmark = pytest.mark.anyio

FAST = StoreOptions(lease_seconds=0.6, idle_poll=0.05)


def _prompts(tag: str, n: int) -> list[str]:
    return [f"{tag} scene {i}" for i in range(n)]


async def _drain(batch: DurableBatch) -> list[BatchResult]:
    return [result async for result in batch]


@STORE_KINDS
async def test_a_stored_batch_completes_and_a_rerun_pays_nothing(
    store_url: str, batch_id: str
) -> None:
    """Every input completes once; the same batch run again sends no create at all."""
    prompts = _prompts(batch_id, 6)
    opts = StoreOptions(batch_id=batch_id, lease_seconds=5, idle_poll=0.05)
    async with emulated(time_scale=0.001) as service:
        with anyio.fail_after(30):
            async with service.client.batch(prompts, store=store_url, store_options=opts) as b:
                first = await _drain(b)
                assert isinstance(b, DurableBatch)
                assert b.batch_id == batch_id
        assert sorted(r.index for r in first) == list(range(6))
        assert all(r.ok for r in first)
        assert {r.request.prompt for r in first if r.request} == set(prompts)
        assert service.stats()["generations_created"] == 6

        with anyio.fail_after(30):
            async with service.client.batch(prompts, store=store_url, store_options=opts) as b:
                again = await _drain(b)
        assert again == []
        assert service.stats()["generations_created"] == 6
        store = await open_store(store_url, batch_id=batch_id)
        try:
            counts = await store.counts()
            assert counts[JobState.COMPLETED] == 6
            jobs = await store.jobs()
            assert {j.generation_id for j in jobs} == {r.generation_id for r in first}
        finally:
            await store.aclose()


@STORE_KINDS
async def test_a_batch_stopped_midway_resumes_without_paying_twice(
    store_url: str, batch_id: str
) -> None:
    """Leave after two results; a second worker takes over the rest: N generations, no
    duplicate prompt, every input reported exactly once across the two runs."""
    prompts = _prompts(batch_id, 8)
    async with emulated(time_scale=0.002) as service:
        seen: list[BatchResult] = []
        first_opts = StoreOptions(batch_id=batch_id, worker="first", lease_seconds=0.6)
        with anyio.fail_after(30):
            async with service.client.batch(
                prompts, store=store_url, store_options=first_opts, max_concurrency=4
            ) as b:
                async for result in b:
                    seen.append(result)
                    if len(seen) == 2:
                        break
        second_opts = StoreOptions(
            batch_id=batch_id, worker="second", lease_seconds=0.6, idle_poll=0.05
        )
        with anyio.fail_after(30):
            async with service.client.batch(
                prompts, store=store_url, store_options=second_opts
            ) as b:
                seen += await _drain(b)
        stats = service.stats()
        assert service.emulator.ledger.duplicate_prompts() == {}
        created = stats["generations_created"]
        assert created <= len(prompts)
        indexes = sorted(r.index for r in seen)
        assert indexes == list(range(len(prompts)))  # each input reported once
        assert all(r.ok for r in seen)
        assert len({r.generation_id for r in seen}) == created == len(prompts)


@STORE_KINDS
async def test_two_workers_share_one_batch(store_url: str, batch_id: str) -> None:
    """Two workers on one store split the inputs: each input created once, all reported."""
    prompts = _prompts(batch_id, 12)
    results: dict[str, list[BatchResult]] = {"a": [], "b": []}
    async with emulated(time_scale=0.002) as service:

        async def worker(name: str) -> None:
            opts = StoreOptions(batch_id=batch_id, worker=name, lease_seconds=5, idle_poll=0.05)
            opts = StoreOptions(
                batch_id=batch_id, worker=name, lease_seconds=5, idle_poll=0.05, max_leased=3
            )
            async with service.client.batch(prompts, store=store_url, store_options=opts) as b:
                results[name] = await _drain(b)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker, "a")
                tg.start_soon(worker, "b")
        every = results["a"] + results["b"]
        assert sorted(r.index for r in every) == list(range(len(prompts)))
        assert all(r.ok for r in every)
        assert results["a"] and results["b"]  # max_leased=3 leaves work for the other
        assert service.stats()["generations_created"] == len(prompts)
        assert service.emulator.ledger.duplicate_prompts() == {}


@STORE_KINDS
async def test_a_create_in_flight_when_its_worker_died_is_uncertain_never_resent(
    store: JobStore,
) -> None:
    """A job found ``submitting`` under a dead worker's lease is reported uncertain, and its
    create is not sent again; the other inputs complete."""
    prompts = _prompts(store.batch_id, 3)
    bodies = [{"model": "veo2", "prompt": p} for p in prompts]
    async with emulated(time_scale=0.001) as service:
        # The same bodies the batch will key (veo2 defaults included).
        from veo_async._models import coerce_request

        bodies = [coerce_request(p).to_body() for p in prompts]
        keys = input_keys(bodies)
        await store.add_inputs(zip(keys, bodies, strict=True))
        taken = await store.take_work("dead", count=1)
        assert [t.key for t in taken] == [keys[0]]
        assert await store.claim_intent(keys[0], "dead")  # then the process died

        with anyio.fail_after(30):
            async with service.client.batch(prompts, store=store, store_options=FAST) as b:
                results = {r.index: r for r in await _drain(b)}
        assert sorted(results) == [0, 1, 2]
        assert isinstance(results[0].error, CreateOutcomeUnknownError)
        assert results[1].ok
        assert results[2].ok
        assert service.stats()["generations_created"] == 2
        job = await store.get(keys[0])
        assert job is not None
        assert job.state is JobState.UNCERTAIN


@STORE_KINDS
async def test_invalid_inputs_are_results_and_never_stored(store: JobStore) -> None:
    """A bad input is a typed error result; the good ones run; the bad one is not stored."""
    async with emulated(time_scale=0.001) as service:
        inputs: list[BatchInput] = [
            "a valid prompt " + store.batch_id,
            {"model": "veo2", "prompt": "   "},
        ]
        with anyio.fail_after(30):
            async with service.client.batch(inputs, store=store, store_options=FAST) as b:
                results = {r.index: r for r in await _drain(b)}
        assert results[0].ok
        assert isinstance(results[1].error, RequestValidationError)
        assert len(await store.jobs()) == 1
        assert service.stats()["generations_created"] == 1


@STORE_KINDS
async def test_ids_to_track_go_through_the_store(store: JobStore) -> None:
    """Generation ids given as BatchItems are tracked once and recorded as finished."""
    async with emulated(time_scale=0.001) as service:
        gids = [(await service.client.submit(prompt=f"tracked {i}")).id for i in range(3)]
        items = [BatchItem(generation_id=g) for g in gids]
        with anyio.fail_after(30):
            async with service.client.batch(items, store=store, store_options=FAST) as b:
                results = await _drain(b)
        assert sorted(r.generation_id or "" for r in results) == sorted(gids)
        assert all(r.ok for r in results)
        assert (await store.counts())[JobState.COMPLETED] == 3
        assert service.stats()["generations_created"] == 3


@ASYNCIO_ONLY
async def test_an_unreachable_redis_is_a_clear_error_and_nothing_is_sent(tmp_path: Path) -> None:
    """Redis down at start: StoreUnavailableError naming the URL (no password); no create."""
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    async with emulated(time_scale=0.001) as service:
        with anyio.fail_after(30), pytest.raises(StoreUnavailableError) as raised:
            async with service.client.batch(["a prompt"], store=url) as b:
                await _drain(b)
        assert "127.0.0.1" in str(raised.value)
        assert "s3cret" not in str(raised.value)
        assert service.stats()["create_requests"] == 0


async def test_store_options_are_checked_before_anything_runs() -> None:
    """Nonsense store options and a wrong store type are refused at once."""
    with pytest.raises(ValueError, match="lease_seconds"):
        StoreOptions(lease_seconds=0)
    with pytest.raises(ValueError, match="max_leased and lease_batch"):
        StoreOptions(max_leased=0)
    async with emulated(time_scale=0.001) as service:
        with pytest.raises(TypeError, match="JobStore"):
            service.client.batch(["x"], store=42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="store_options"):
            service.client.batch(["x"], store_options=StoreOptions())


def test_the_sync_client_runs_a_durable_batch(tmp_path: Path) -> None:
    """VeoClient.batch(store=...) in a plain script: completes, and a rerun submits nothing."""
    from veo_async import VeoClient
    from veo_async.emulator import EmulatorConfig, EmulatorServer

    url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    prompts = _prompts("sync", 3)
    with (
        EmulatorServer(EmulatorConfig(time_scale=0.001)) as server,
        VeoClient("sk-sync", base_url=server.base_url, time_scale=0.001) as client,
    ):
        first = list(client.batch(prompts, store=url, store_options=FAST))
        again = list(client.batch(prompts, store=url))
        created = server.stats(include_generations=False)["generations_created"]
    assert sorted(r.index for r in first) == [0, 1, 2]
    assert all(r.ok for r in first)
    assert again == []
    assert created == 3
