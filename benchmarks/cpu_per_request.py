"""Client CPU per status request, 100 in flight, against the emulator in its own process.

    python -m benchmarks.cpu_per_request                    # every variant, 3 interleaved rounds
    python -m benchmarks.cpu_per_request --requests 1000 --rounds 1     # quicker
    python -m benchmarks.cpu_per_request --profile raw_httpx_pool100    # cProfile one variant

Each variant makes ``--requests`` ``GET /v2/video/generations?generation_id=...`` of generations
that stay ``generating`` (the emulator's generation time is multiplied by 1,000), 100 in flight
(a semaphore acquired before each task is spawned, as the engine does), and reports
``time.process_time()`` of this process per request in microseconds (the emulator's CPU is
another process's). Rounds are interleaved and the median is reported: CPU time on a shared
2-core machine drifts over minutes, so variants measured minutes apart are not comparable.

Variants: the figures of issue 16 (``raw_aiohttp``; the SDK's engine with default settings,
which on CPython/asyncio is the aiohttp transport, ``sdk_engine_default``; with
``fast_transport=True``, ``sdk_engine_fast``; with ``fast_transport=False``, httpx's own
transport, ``sdk_engine_httpx``) and the options measured for httpx's own transport: pool sizes,
httpx over the aiohttp transport (httpx-aiohttp), and the SDK engine with a smaller pool.
Writes ``benchmarks/results/cpu_per_request.json``. ``--profile NAME --stats FILE`` also saves
the raw ``pstats`` of the profiled run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from benchmarks._emuserver import BenchEmulatorProcess
from veo_async import AsyncVeoClient, FixedIntervalPolicy
from veo_async.emulator import EmulatorConfig

__all__ = ["VARIANTS", "main", "measure_all"]

KEY = "bench"
CONCURRENCY = 100
RESULTS = Path(__file__).parent / "results"

Runner = Callable[[str, list[str]], Awaitable[float]]


async def _spawn_all(ids: list[str], one: Callable[[str], Awaitable[None]]) -> float:
    """Run ``one(gid)`` for every id, CONCURRENCY at a time; CPU microseconds per request."""
    sem = anyio.Semaphore(CONCURRENCY)

    async def task(gid: str) -> None:
        try:
            try:
                await one(gid)
            except Exception:
                # A keep-alive connection closed by the server under load (seen once as
                # httpx.ReadError on this shared machine): sent again, as any client would.
                await one(gid)
        finally:
            sem.release()

    start = time.process_time()
    async with anyio.create_task_group() as tg:
        for gid in ids:
            await sem.acquire()
            tg.start_soon(task, gid)
    return (time.process_time() - start) / len(ids) * 1e6


async def raw_aiohttp(url: str, ids: list[str]) -> float:
    """aiohttp alone: ``ClientSession`` with a 100-connection ``TCPConnector``."""
    import aiohttp

    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(gid: str) -> None:
            async with session.get(url, params={"generation_id": gid}, headers=headers) as r:
                await r.json()

        return await _spawn_all(ids, one)


def _raw_httpx(limits: httpx.Limits | None, aiohttp_transport: bool = False) -> Runner:
    async def run(url: str, ids: list[str]) -> float:
        transport: httpx.AsyncBaseTransport | None = None
        kwargs: dict[str, Any] = {}
        if aiohttp_transport:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits or httpx.Limits())
        elif limits is not None:
            kwargs["limits"] = limits
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, headers=headers, **kwargs) as http:

            async def one(gid: str) -> None:
                r = await http.get(url, params={"generation_id": gid})
                r.json()

            return await _spawn_all(ids, one)

    return run


def _sdk_engine(fast: bool | None, limits: httpx.Limits | None = None) -> Runner:
    """The SDK's engine polling ``ids`` that never finish, back to back, for 2 rounds
    (``fast``: the client's ``fast_transport``; ``None`` leaves it unset, the default)."""

    async def run(url: str, ids: list[str]) -> float:
        base_url = url.rsplit("/v2/", 1)[0]
        policy = FixedIntervalPolicy(interval=1e-6)
        extra: dict[str, Any] = {"limits": limits} if limits is not None else {}
        async with AsyncVeoClient(KEY, base_url=base_url, fast_transport=fast, **extra) as client:
            target = 2 * len(ids)
            start = time.process_time()
            async with client.as_completed(
                ids, max_concurrency=CONCURRENCY, poll_policy=policy
            ) as gens:
                while gens.counts.status_requests < target:
                    await anyio.sleep(0.005)
                polls = gens.counts.status_requests
            return (time.process_time() - start) / polls * 1e6

    return run


def _limits(connections: int, keepalive: int | None = None) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections if keepalive is None else keepalive,
    )


VARIANTS: dict[str, tuple[Runner, str]] = {
    "raw_aiohttp": (raw_aiohttp, "aiohttp ClientSession, 100 connections (the yardstick)"),
    "sdk_engine_default": (
        _sdk_engine(None),
        "veo-async engine, default settings (a plain install on CPython/asyncio: aiohttp)",
    ),
    "sdk_engine_fast": (_sdk_engine(True), "veo-async engine, fast_transport=True (aiohttp)"),
    "sdk_engine_httpx": (
        _sdk_engine(False),
        "veo-async engine, fast_transport=False: httpx's own transport (trio's path)",
    ),
    "raw_httpx_aiohttp": (
        _raw_httpx(_limits(100), aiohttp_transport=True),
        "httpx.AsyncClient over httpx-aiohttp's AiohttpTransport, 100 connections",
    ),
    "raw_httpx_pool100": (_raw_httpx(_limits(100)), "httpx, Limits(100, keepalive 100)"),
    "raw_httpx_defaults": (_raw_httpx(None), "httpx, its default Limits(100, keepalive 20)"),
    "raw_httpx_pool32": (_raw_httpx(_limits(32)), "httpx, Limits(32, keepalive 32)"),
    "raw_httpx_pool10": (_raw_httpx(_limits(10)), "httpx, Limits(10, keepalive 10)"),
    "sdk_engine_httpx_pool32": (
        _sdk_engine(False, _limits(32)),
        "veo-async engine, httpx's own transport, limits=Limits(32, keepalive 32)",
    ),
    "sdk_engine_httpx_pool10": (
        _sdk_engine(False, _limits(10)),
        "veo-async engine, httpx's own transport, limits=Limits(10, keepalive 10)",
    ),
}
"""Name -> (runner, description)."""


async def measure_all(
    names: list[str],
    requests: int,
    rounds: int,
    profile: str | None = None,
    stats_path: Path | None = None,
) -> dict[str, Any]:
    """Warm up every variant, then ``rounds`` interleaved rounds; medians per variant."""
    config = EmulatorConfig(time_scale=1.0, generation_time_factor=1000.0, seed=3)
    emu = BenchEmulatorProcess(config)
    with emu:
        ids = emu.precreate(requests, "cpu")
        url = emu.base_url + "/v2/video/generations"
        if profile is not None:
            runner = VARIANTS[profile][0]
            await runner(url, ids[: max(100, requests // 10)])
            # CPU time, not wall time: on a shared machine a blocking syscall's wall time
            # includes time spent descheduled.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            us = await runner(url, ids)
            profiler.disable()
            if stats_path is not None:
                profiler.dump_stats(stats_path)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            return {"profile": profile, "us_per_request_under_cprofile": us, "text": out.getvalue()}
        for name in names:
            await VARIANTS[name][0](url, ids[: max(100, requests // 10)])  # warm up
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                samples[name].append(await VARIANTS[name][0](url, ids))
    median = {name: round(statistics.median(v), 1) for name, v in samples.items()}
    base = median.get("raw_aiohttp")
    return {
        "requests": requests,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "us_per_request": median,
        "samples": {name: [round(x, 1) for x in v] for name, v in samples.items()},
        "ratio_to_raw_aiohttp": {name: round(v / base, 2) for name, v in median.items() if base},
        "descriptions": {name: VARIANTS[name][1] for name in names},
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out: dict[str, str] = {"python": sys.version.split()[0]}
    for dist in ("httpx", "httpcore", "anyio", "h11", "aiohttp", "httpx-aiohttp"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print and save JSON (or print a cProfile report)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_per_request")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--profile", choices=sorted(VARIANTS), default=None)
    parser.add_argument(
        "--stats", type=Path, default=None, help="with --profile: also save the raw pstats here"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_per_request.json")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    result = asyncio.run(measure_all(names, args.requests, args.rounds, args.profile, args.stats))
    if args.profile is not None:
        print(f"{args.profile}: {result['us_per_request_under_cprofile']:.0f} us/request")
        print(result["text"])
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name, us in result["us_per_request"].items():
        ratio = result["ratio_to_raw_aiohttp"].get(name)
        print(f"{name:26} {us:8.1f} us  {ratio}x  {result['descriptions'][name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
