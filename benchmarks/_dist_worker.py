"""One client process of :mod:`benchmarks.distributed`: ``python -m benchmarks._dist_worker``.

Arguments: ``SPEC OUT``. ``SPEC`` is a JSON :class:`DistSpec`. The process imports
everything, opens its client (and its :class:`~veo_async.stores.SharedBudget`, if any), prints
``ready`` and waits for a line on stdin, so that the harness can release every process of a
run at the same moment; the line is ``go``, or a JSON list of the ids to track (so that the
ids can be made after every tracker is ready, and none has finished before tracking starts).
It then runs its share of the work and writes a JSON :class:`DistResult` to ``OUT``: per job
the generation id, whether it succeeded and ``time.time()`` at the moment this process learned
it had ended; its own CPU seconds (``resource.getrusage``, from the release on); the 429s its
client saw and the pace its governor ended at.

Modes:

``batch``
    ``client.batch(prompts)`` over this process's share of the prompts (split by the harness).
``track``
    ``client.as_completed(ids)`` over this process's share of the ids (split by the harness).
``store``
    ``client.batch(inputs, store=STORE_URL, store_options=StoreOptions(worker=NAME, ...))``:
    every process is given *all* the inputs (prompts, or ``BatchItem(generation_id=...)`` to
    track) and the store splits them (Redis Streams leases).

Every mode tells the SDK the emulator's time scale (``AsyncVeoClient(time_scale=...)``); the
shared budget's rate is in wall requests per second (Redis's clock), i.e. the real-time rate
divided by the scale.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

__all__ = ["DistResult", "DistSpec", "main"]

API_KEY = "bench-distributed-key"


@dataclass
class DistSpec:
    """What one process runs."""

    mode: str
    """``batch``, ``track`` or ``store``."""
    base_url: str
    scale: float
    deadline: float
    """Wall seconds after the release at which the process stops, done or not."""
    prompts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    redis_url: str | None = None
    """A shared budget on this Redis (``None``: none)."""
    budget_name: str = ""
    budget_rate: float = 0.0
    """Wall requests per second."""
    budget_burst: float = 1.0
    store_url: str | None = None
    """``store`` mode: the store every process shares."""
    worker: str = ""
    max_concurrency: int = 32
    max_leased: int | None = None
    """``store`` mode: the most jobs one worker leases at once (``None``: the SDK's default)."""
    batch_id: str | None = None
    """``store`` mode: the batch's namespace in the store (``None``: derived from the inputs)."""
    fast_transport: bool | None = None


@dataclass
class DistResult:
    """What one process reports."""

    started_at: float
    finished_at: float
    cpu_seconds: float
    jobs: list[tuple[str | None, bool, float | None]]
    """(generation id, ok, wall time it was noticed done) per job this process delivered."""
    client_429s: int
    pace_end: float | None
    shared_failures: int
    timed_out: bool
    transport: str | None
    errors_sample: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _wait_for_go() -> list[str] | None:
    """Say ``ready``; the release line is ``go`` or a JSON list of ids (made after ``ready``)."""
    print("ready", flush=True)
    line = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
    if line.startswith("["):
        ids: list[str] = json.loads(line)
        return ids
    return None


def _store_batch(client: Any, inputs: list[Any], spec: DistSpec) -> Any:
    """``client.batch(inputs, store=URL, store_options=StoreOptions(worker=..., ...))``."""
    from veo_async import StoreOptions

    options: dict[str, Any] = {"worker": spec.worker}
    if spec.max_leased is not None:
        options["max_leased"] = spec.max_leased
    if spec.batch_id is not None:
        options["batch_id"] = spec.batch_id
    return client.batch(
        inputs,
        store=spec.store_url,
        store_options=StoreOptions(**options),
        max_concurrency=spec.max_concurrency,
    )


async def run(spec: DistSpec) -> DistResult:
    """Open the client, wait for the release line, run the share, report."""
    from veo_async import AsyncVeoClient, BatchItem
    from veo_async.stores import SharedBudget

    budget: SharedBudget | None = None
    if spec.redis_url:
        budget = await SharedBudget.open(
            spec.redis_url, name=spec.budget_name, rate=spec.budget_rate, burst=spec.budget_burst
        )
    jobs: list[tuple[str | None, bool, float | None]] = []
    errors: set[str] = set()
    notes: list[str] = []
    client = AsyncVeoClient(
        API_KEY,
        base_url=spec.base_url,
        time_scale=spec.scale,
        shared_budget=budget,
        fast_transport=spec.fast_transport,
    )
    try:
        async with client:
            given = await _wait_for_go()
            cpu0 = _cpu()
            ids = spec.ids if given is None else given
            inputs: list[Any]
            if spec.mode == "track" or (spec.mode == "store" and ids):
                inputs = [BatchItem(generation_id=g) for g in ids]
            else:
                inputs = list(spec.prompts)
            started = time.time()
            if spec.mode == "batch":
                batch = client.batch(inputs, max_concurrency=spec.max_concurrency)
            elif spec.mode == "track":
                batch = client.as_completed(ids, max_concurrency=spec.max_concurrency)
            elif spec.mode == "store":
                batch = _store_batch(client, inputs, spec)
            else:
                raise SystemExit(f"unknown mode {spec.mode!r}")
            with anyio.move_on_after(spec.deadline) as scope:
                async with batch:
                    async for result in batch:
                        now = time.time()
                        generation = result.generation
                        done = generation is not None and generation.is_terminal
                        jobs.append((result.generation_id, result.ok, now if done else None))
                        if result.error is not None:
                            errors.add(type(result.error).__name__)
            finished = time.time()
            cpu = _cpu() - cpu0
            governor = client.governor
            return DistResult(
                started_at=started,
                finished_at=finished,
                cpu_seconds=cpu,
                jobs=jobs,
                client_429s=governor.rate_limited,
                pace_end=governor.rate,
                shared_failures=governor.shared_failures,
                timed_out=scope.cancelled_caught,
                transport=client.transport_name,
                errors_sample=sorted(errors)[:6],
                notes=notes,
            )
    finally:
        if budget is not None:
            await budget.aclose()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks._dist_worker SPEC_JSON_FILE OUT_JSON_FILE``."""
    args = sys.argv[1:] if argv is None else argv
    spec = DistSpec(**json.loads(Path(args[0]).read_text()))
    result = asyncio.run(run(spec))
    Path(args[1]).write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
