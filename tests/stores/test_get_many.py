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
