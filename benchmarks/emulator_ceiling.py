"""How many status requests per second the emulator server can answer, and what that bounds.

    python -m benchmarks.emulator_ceiling                       # 2 load processes, 8 s
    python -m benchmarks.emulator_ceiling --ids 100000 --spread 10 --scales 0.5,1

Issue 15 asks for 100,000 ids finishing within about 10 s of each other to be noticed, by 4
tracker processes, with a mean delay of at most 10 s. Every id needs at least one status
request after it has finished, and on this machine all of them are answered by one emulator
server process (:mod:`benchmarks._emuserver`, the same server the distributed benchmark uses).
This script measures that server's ceiling and computes what it implies, independently of any
client:

1. The emulator runs in its own process (time scale 1) with ``--pool`` pre-created veo2
   generations. ``--loaders`` processes hammer it with raw aiohttp status requests (no SDK,
   ``--in-flight`` each) for ``--seconds``. Figures: answers per wall second, and the server's
   own CPU per answer (its process's CPU time over the answers: nearly independent of what
   else runs on the machine, unlike the rate).
2. **The bound.** A perfect tracker (an oracle that knows each id's finishing moment and polls
   it exactly once, at that moment, in finishing order) against a server that answers at most
   ``C`` requests per second: the k-th finished id cannot be answered before ``k / C`` seconds
   after the first one finished. With ``N`` ids finishing uniformly over ``spread`` real seconds
   and the emulator's clock compressed by ``scale`` (``spread * scale`` wall seconds), the mean
   delay of that oracle, in real-time equivalents, is printed for each scale, for the measured
   ``C`` (what this machine did) and for ``1 / server CPU per answer`` (one whole core for the
   server: the best this single-process server can do on any machine as fast as this one).
   No real tracker can beat the oracle.

Times are wall seconds unless said otherwise; nothing here touches the live service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks._emuserver import BenchEmulatorProcess
from benchmarks.run import machine
from veo_async.emulator import EmulatorConfig

__all__ = ["main", "oracle_mean_delay"]

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-ceiling-key"
POLL_PATH = "/v2/generate/video/google/generation"


def oracle_mean_delay(n: int, spread_wall: float, capacity: float) -> tuple[float, float]:
    """Mean and p99 delay (wall s) of a perfect one-poll-per-id tracker.

    ``n`` ids finish uniformly over ``spread_wall`` seconds; the server answers at most
    ``capacity`` requests per second, in finishing order.
    """
    delays = []
    free_at = 0.0  # when the server can start the next answer
    step = 1.0 / capacity
    for k in range(n):
        done = spread_wall * k / max(1, n - 1)
        start = max(done, free_at)
        free_at = start + step
        delays.append(free_at - done)
    delays.sort()
    return sum(delays) / n, delays[int(0.99 * (n - 1))]


async def _load(base_url: str, ids: list[str], in_flight: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    answered = errors = 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers) as session:

        async def one(offset: int) -> None:
            nonlocal answered, errors
            i = offset
            while time.monotonic() < deadline:
                params = {"generation_id": ids[i % len(ids)]}
                i += in_flight
                try:
                    async with session.get(POLL_PATH, params=params) as reply:
                        await reply.read()
                        if reply.status == 200:
                            answered += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(one(k) for k in range(in_flight)))
    return {"answered": answered, "errors": errors}


def _worker(argv: list[str]) -> int:
    base_url, ids_file, in_flight, seconds, start_at = argv
    ids = json.loads(Path(ids_file).read_text())
    time.sleep(max(0.0, float(start_at) - time.time()))
    result = asyncio.run(_load(base_url, ids, int(in_flight), float(seconds)))
    print(json.dumps(result), flush=True)
    return 0


def measure(loaders: int, in_flight: int, seconds: float, pool: int) -> dict[str, Any]:
    """Start the emulator, pre-create ``pool`` ids, load it; the server's figures."""
    config = EmulatorConfig(seed=20261202, queue_delay=1.0, time_scale=1.0)
    emu = BenchEmulatorProcess(config)
    emu.start()
    try:
        ids = emu.precreate(pool, "ceiling", key=API_KEY)
        ids_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"veo-ceiling-{os.getpid()}.json"
        ids_file.write_text(json.dumps(ids))
        assert emu.process is not None
        server = psutil.Process(emu.process.pid)
        start_at = time.time() + 2.0
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env.get("PYTHONPATH", ""))
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.emulator_ceiling",
                    "--worker",
                    emu.base_url,
                    str(ids_file),
                    str(in_flight),
                    str(seconds),
                    str(start_at),
                ],
                stdout=subprocess.PIPE,
                env=env,
                cwd=ROOT,
            )
            for _ in range(loaders)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = sum(server.cpu_times()[:2])
        outputs = [p.communicate(timeout=seconds + 120)[0] for p in procs]
        cpu1 = sum(server.cpu_times()[:2])
        ids_file.unlink(missing_ok=True)
    finally:
        emu.stop()
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out in outputs]
    answered = sum(r["answered"] for r in results)
    return {
        "loaders": loaders,
        "in_flight": in_flight,
        "seconds": seconds,
        "pool": pool,
        "answered": answered,
        "errors": sum(r["errors"] for r in results),
        "answers_per_s": answered / seconds,
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_ms_per_answer": (cpu1 - cpu0) / max(1, answered) * 1000.0,
        "server_cpu_share": (cpu1 - cpu0) / seconds,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: measure the ceiling, print it and the bound it implies."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--worker"]:
        return _worker(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.emulator_ceiling", description=__doc__
    )
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pool", type=int, default=5000)
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=10.0, help="real s the ids finish over")
    parser.add_argument("--scales", default="0.5,1")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(args_in)
    figures = measure(args.loaders, args.in_flight, args.seconds, args.pool)
    per_core = 1000.0 / figures["server_cpu_ms_per_answer"]
    print(
        f"emulator server: {figures['answers_per_s']:.0f} answers/s measured "
        f"({figures['answered']} in {args.seconds:.0f} s, {figures['errors']} errors), "
        f"{figures['server_cpu_ms_per_answer']:.3f} ms of server CPU per answer "
        f"(one core: {per_core:.0f}/s), server at {figures['server_cpu_share']:.2f} of a core, "
        f"load average {figures['load_average'][0]:.1f}"
    )
    bounds = []
    for scale in (float(s) for s in args.scales.split(",") if s):
        for label, capacity in (("measured", figures["answers_per_s"]), ("one core", per_core)):
            mean, p99 = oracle_mean_delay(args.ids, args.spread * scale, capacity)
            bounds.append(
                {
                    "scale": scale,
                    "capacity": label,
                    "answers_per_s": capacity,
                    "oracle_mean_delay_real_s": mean / scale,
                    "oracle_p99_delay_real_s": p99 / scale,
                }
            )
            print(
                f"  {args.ids:,} ids over {args.spread:.0f} real s, scale {scale}, "
                f"{label} capacity {capacity:.0f}/s: a perfect tracker's mean delay "
                f"{mean / scale:.1f} s, p99 {p99 / scale:.1f} s (real-time equivalents)"
            )
    if args.out is not None:
        doc = {"machine": machine(), "ceiling": figures, "ids": args.ids, "spread": args.spread}
        doc["bounds"] = bounds
        args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
