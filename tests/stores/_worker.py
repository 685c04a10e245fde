"""A worker process for the store tests: ``python _worker.py MODE URL BATCH [args...]``.

Modes (each prints one line per committed step, flushed, so the parent knows what is durable):

- ``claim URL BATCH NAME N``: add inputs 0..N-1, try the intent of every key; print
  ``won KEY`` for each one this process won.
- ``hold URL BATCH NAME N``: take every work item, take the intent of the first third, record
  an id for the second third, print ``ready``, then renew the leases forever (until killed).
- ``bucket URL NAME RATE BURST SPAN [TAKERS [SKEW]]``: connect, print ``ready``, wait for a
  line on stdin, then ``TAKERS`` tasks (default 1) acquire from the shared budget for ``SPAN``
  s; print ``ok TIME`` (the real ``time.time()``) for each grant. ``SKEW``: seconds added to
  this process's ``time.time`` and ``time.monotonic`` (a worker whose clock is off).
- ``journal URL BATCH N``: run jobs through every step (intent, id, finished, downloaded),
  printing ``intent KEY`` / ``submitted KEY`` / ``downloaded KEY`` after each commit; on a
  restart, jobs found ``submitting`` are marked abandoned first (what the CLI does).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import anyio.to_thread

from veo_async.stores import (
    Event,
    JobState,
    SharedBudget,
    StoredJob,
    WorkItem,
    input_keys,
    open_store,
)


def say(*words: Any) -> None:
    """Print one line and flush it (the parent reads it as a committed step)."""
    print(*words, flush=True)


def bodies(n: int) -> list[dict[str, Any]]:
    """``n`` distinct request bodies."""
    return [{"model": "google/veo-3.1-t2v", "prompt": f"prompt {i}"} for i in range(n)]


async def claim(url: str, batch: str, name: str, n: int) -> None:
    """Race for every intent; print the ones won."""
    reqs = bodies(n)
    keys = input_keys(reqs)
    store = await open_store(url, batch_id=batch)
    try:
        await store.add_inputs(zip(keys, reqs, strict=True))
        for key in keys:
            if await store.claim_intent(key, name):
                say("won", key)
    finally:
        await store.aclose()
    say("done")


async def hold(url: str, batch: str, name: str, n: int) -> None:
    """Take all work, leave jobs in three states, then renew the leases until killed."""
    reqs = bodies(n)
    keys = input_keys(reqs)
    store = await open_store(url, batch_id=batch)
    await store.add_inputs(zip(keys, reqs, strict=True))
    items: list[WorkItem] = []
    while len(items) < n:
        items += await store.take_work(name, count=n, wait=0.2)
    third = n // 3
    for i, item in enumerate(items):
        if i < 2 * third:
            assert await store.claim_intent(item.key, name)
        if third <= i < 2 * third:
            await store.transition(item.key, Event.SUBMITTED, generation_id=f"gen-{i}", status="q")
    say("ready", " ".join(i.id for i in items))
    while True:
        lost = await store.heartbeat(name, items)
        if lost:
            say("lost", len(lost))
        await anyio.sleep(0.1)


REAL_TIME = time.time


def skew_clocks(skew: float) -> None:
    """Put this process's wall and monotonic clocks ``skew`` seconds off (before the loop)."""
    if skew:
        real_time, real_monotonic = time.time, time.monotonic
        time.time = lambda: real_time() + skew
        time.monotonic = lambda: real_monotonic() + skew


async def bucket(url: str, name: str, rate: float, burst: float, span: float, takers: int) -> None:
    """Connect, say ``ready``, wait for a line on stdin, then ``takers`` tasks acquire for
    ``span`` seconds (each grant printed with the real time)."""
    async with await SharedBudget.open(url, name=name, rate=rate, burst=burst) as budget:
        say("ready")
        await anyio.to_thread.run_sync(sys.stdin.readline)
        until = time.monotonic() + span

        async def taker() -> None:
            while time.monotonic() < until:
                with anyio.move_on_after(max(0.0, until - time.monotonic())):
                    await budget.acquire()
                    say("ok", repr(REAL_TIME()))

        async with anyio.create_task_group() as tg:
            for _ in range(takers):
                tg.start_soon(taker)
    say("done")


async def journal(url: str, batch: str, n: int) -> None:
    """Walk every job through all its steps, announcing each commit."""
    reqs = bodies(n)
    keys = input_keys(reqs)
    store = await open_store(url, batch_id=batch)
    await store.add_inputs(zip(keys, reqs, strict=True))
    for old in await store.jobs():
        if old.state is JobState.SUBMITTING:
            await store.transition(old.key, Event.ABANDONED)
    for i, key in enumerate(keys):
        job: StoredJob | None = await store.get(key)
        assert job is not None
        if job.state is JobState.PENDING and await store.claim_intent(key, "writer"):
            say("intent", key)
            await store.transition(key, Event.SUBMITTED, generation_id=f"gen-{i}", status="q")
            say("submitted", key)
        job = await store.get(key)
        assert job is not None
        if job.state is JobState.SUBMITTED:
            await store.transition(
                key,
                Event.FINISHED,
                generation_id=job.generation_id,
                status="completed",
                video_url=f"https://cdn.example/{i}.mp4",
                credits=1.5,
                error=None,
            )
            say("finished", key)
        job = await store.get(key)
        assert job is not None
        if job.state is JobState.COMPLETED:
            await store.transition(
                key, Event.DOWNLOADED, file=f"{i}.mp4", sha256="0" * 64, size=1000 + i
            )
            say("downloaded", key)
    await store.aclose()
    say("done")


def main(argv: list[str]) -> None:
    """Dispatch on the mode."""
    mode, *args = argv
    if mode == "claim":
        anyio.run(claim, args[0], args[1], args[2], int(args[3]))
    elif mode == "hold":
        anyio.run(hold, args[0], args[1], args[2], int(args[3]))
    elif mode == "bucket":
        takers = int(args[5]) if len(args) > 5 else 1
        skew_clocks(float(args[6]) if len(args) > 6 else 0.0)
        rate, burst, span = float(args[2]), float(args[3]), float(args[4])
        anyio.run(bucket, args[0], args[1], rate, burst, span, takers)
    elif mode == "journal":
        anyio.run(journal, args[0], args[1], int(args[2]))
    else:  # pragma: no cover
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
