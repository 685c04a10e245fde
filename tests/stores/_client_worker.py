"""A client process for the shared-budget test.

``python _client_worker.py BASE REDIS NAME RATE BURST N CONCURRENCY GENERATION_ID TIME_SCALE
KEY``: open one ``AsyncVeoClient`` with API key ``KEY`` on the emulator at ``BASE`` (with a
:class:`SharedBudget` ``NAME`` on ``REDIS`` at ``RATE``/s, burst ``BURST``; ``REDIS`` ``-``
means no shared budget; the client's ``time_scale`` is the emulator's), print ``ready``, wait
for a line on stdin, then make ``N`` status requests (``client.get``) for ``GENERATION_ID``,
``CONCURRENCY`` at a time, as fast as the client allows; print ``done SECONDS
RATE_LIMITED_SEEN PACE``. The emulator treats each API key as its own account and limit.
"""

from __future__ import annotations

import sys
import time

import anyio
import anyio.to_thread

from veo_async import AsyncVeoClient, RetryConfig
from veo_async.stores import SharedBudget


async def main(argv: list[str]) -> None:
    """Run the requests and report."""
    base, redis_url, name = argv[0], argv[1], argv[2]
    rate, burst = float(argv[3]), float(argv[4])
    n, concurrency, gid = int(argv[5]), int(argv[6]), argv[7]
    time_scale, key = float(argv[8]), argv[9]
    budget = None
    if redis_url != "-":
        budget = await SharedBudget.open(redis_url, name=name, rate=rate, burst=burst)
    client = AsyncVeoClient(
        key,
        base_url=base,
        shared_budget=budget,
        retry=RetryConfig(max_attempts=100, initial_backoff=0.05, max_backoff=1.0),
        fast_transport=False,
        time_scale=time_scale,
    )
    try:
        async with client:
            await client.get(gid)  # connect and warm up before the start line
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            started = time.monotonic()
            remaining = n
            lock = anyio.Lock()

            async def runner() -> None:
                nonlocal remaining
                while True:
                    async with lock:
                        if remaining == 0:
                            return
                        remaining -= 1
                    generation = await client.get(gid)
                    assert generation.id == gid

            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(runner)
            elapsed = time.monotonic() - started
            governor = client.governor
            print("done", f"{elapsed:.3f}", governor.rate_limited, governor.rate, flush=True)
    finally:
        if budget is not None:
            await budget.aclose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
