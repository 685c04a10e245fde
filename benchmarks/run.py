"""Run the side-by-side benchmarks: ``python -m benchmarks.run [--quick] [--out DIR]``.

One emulator process serves every cell (reconfigured and reset between runs); each competitor
runs in its own subprocess (``benchmarks.competitors``). Figures are computed here from the
worker's report and the emulator's ledger, written to ``results.json`` and rendered by
:mod:`benchmarks.report`. See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._emuserver import BenchEmulatorProcess
from benchmarks.competitors import API_KEY, COMPETITORS, Spec
from veo_async.emulator import EmulatorConfig, FaultConfig

__all__ = [
    "CONDITIONS",
    "SLOW_RESPONSE_S",
    "Cell",
    "cell_settings",
    "default_plan",
    "main",
    "measure",
    "quick_plan",
    "run_plan",
]

ROOT = Path(__file__).resolve().parents[1]
MAX_CONCURRENT = 50
"""Generations per key the emulator runs at once in every scenario but the poller's."""
RATE_LIMIT = 10.0
"""Requests (creates + polls) per real-time second per key in the rate-limited scenario."""
RATE_BURST = 10.0
QUEUE_DELAY = 1.0
FAULT_RATE = 0.10
SEED = 20240601


def _faults(rate: float) -> dict[str, Any]:
    config = FaultConfig.mixed(rate) if rate > 0 else FaultConfig()
    return config.model_dump()


CONDITIONS: dict[str, dict[str, Any]] = {
    "limits": {"max_concurrent": MAX_CONCURRENT, "rate_limit": None, "faults": _faults(0)},
    "rate_limited": {
        "max_concurrent": MAX_CONCURRENT,
        "rate_limit": RATE_LIMIT,
        "rate_limit_burst": RATE_BURST,
        "faults": _faults(0),
    },
    "faults": {"max_concurrent": MAX_CONCURRENT, "rate_limit": None, "faults": _faults(FAULT_RATE)},
    "poller": {"max_concurrent": None, "rate_limit": None, "faults": _faults(0)},
}
"""Emulator settings per condition (``time_scale`` is set per cell)."""


@dataclass
class Cell:
    """One scenario: a condition, a size, a time scale and the competitors to run."""

    condition: str
    n: int
    scale: float
    competitors: list[str]
    documented_sample: int = 0
    """The documented loop runs on this many prompts and is extrapolated to ``n``."""

    @property
    def name(self) -> str:
        return f"{self.condition}/N={self.n}"


def default_plan() -> list[Cell]:
    """The default run (about 13 minutes on 2 cores)."""
    cells: list[Cell] = []
    for condition in ("limits", "rate_limited", "faults"):
        cells.append(Cell(condition, 100, 0.05, list(COMPETITORS), documented_sample=4))
        cells.append(Cell(condition, 1000, 0.015, ["gather-10s", "gather-2s", "veo_async"]))
        # gather-* already fails every job at N = 1,000 (httpx pool/connect timeouts) and at
        # 10,000 does not even stop at its deadline (its pool's cleanup of 10,000 waiters),
        # so the big cells run veo_async alone.
        cells.append(Cell(condition, 10_000, 0.01, ["veo_async"]))
    cells.append(Cell("poller", 100_000, 0.5, ["veo_async"]))
    return cells


def quick_plan() -> list[Cell]:
    """A few seconds per cell: every competitor, every condition, tiny sizes (CI smoke)."""
    cells = [
        Cell(condition, 20, 0.01, list(COMPETITORS), documented_sample=2)
        for condition in ("limits", "rate_limited", "faults")
    ]
    cells.append(Cell("poller", 200, 0.02, ["gather-10s", "veo_async"]))
    return cells


# ---------------------------------------------------------------------- ideal makespan


def _list_schedule(durations: list[float], ready: list[float], slots: int | None) -> float:
    """Makespan of FIFO jobs on ``slots`` servers (``None``: unlimited)."""
    if not durations:
        return 0.0
    if slots is None:
        return max(r + d for r, d in zip(ready, durations, strict=True))
    free: list[float] = [0.0] * min(slots, len(durations))
    end = 0.0
    for r, d in zip(ready, durations, strict=True):
        start = max(heapq.heappop(free), r)
        finish = start + d
        heapq.heappush(free, finish)
        end = max(end, finish)
    return end


def ideal_makespan(durations_real: list[float], condition: str) -> float:
    """The best makespan (real-time s) the emulator's limits allow for these generation times.

    All jobs created at once in order (each ready after the queue delay), FIFO on
    ``max_concurrent`` slots, every completion noticed instantly. Under the rate limit, job
    ``i``'s create can only happen once ``i`` tokens refilled, and the 2N requests (one
    create and at least one poll per job) need ``(2N - burst) / rate`` seconds at least.
    """
    settings = CONDITIONS[condition]
    slots = settings["max_concurrent"]
    n = len(durations_real)
    rate = settings.get("rate_limit")
    if rate:
        burst = float(settings.get("rate_limit_burst") or rate)
        ready = [QUEUE_DELAY + max(0.0, i + 1 - burst) / rate for i in range(n)]
        bound = max(0.0, 2 * n - burst) / rate
    else:
        ready = [QUEUE_DELAY] * n
        bound = 0.0
    return float(max(_list_schedule(durations_real, ready, slots), bound))


# ---------------------------------------------------------------------- figures


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _cpu_share(worker: dict[str, Any]) -> float | None:
    """Client CPU seconds per wall second of its run (1.0: one core busy throughout)."""
    wall = worker["finished_at"] - worker["started_at"]
    return worker["cpu_seconds"] / wall if wall > 0 else None


def measure(
    cell: Cell, competitor: str, worker: dict[str, Any], stats: dict[str, Any], n_total: int
) -> dict[str, Any]:
    """Figures of one run from the worker's report and the emulator's ledger."""
    scale = cell.scale
    jobs: list[dict[str, Any]] = worker["jobs"]
    n_run = len(jobs)
    records: list[dict[str, Any]] = stats.get("generations", [])
    by_id = {r["id"]: r for r in records}
    ok_ids = {j["generation_id"] for j in jobs if j["ok"]}
    delays: list[float] = []
    for job in jobs:
        record = by_id.get(job["generation_id"] or "")
        if record is None or job["noticed_at"] is None or record["completed_at"] is None:
            continue
        delays.append((job["noticed_at"] - record["completed_at"]) / scale)
    noticed = [j["noticed_at"] for j in jobs if j["noticed_at"] is not None]
    all_done = len(noticed) == n_run
    end = max(noticed) if all_done else worker["finished_at"]
    makespan_run = (end - worker["started_at"]) / scale
    extrapolated = n_run < n_total
    makespan = makespan_run * n_total / n_run if extrapolated else makespan_run
    ok = sum(1 for j in jobs if j["ok"])
    if cell.condition == "poller":
        lost = sum(1 for j in jobs if not j["ok"])
    else:
        delivered_prompts = {by_id[g]["prompt"] for g in ok_ids if g in by_id}
        lost_prompts = {
            r["prompt"]
            for r in records
            if r["outcome"] == "completed" and r["prompt"] not in delivered_prompts
        }
        lost = len(lost_prompts)
    duplicates = sum(len(ids) - 1 for ids in stats.get("duplicate_prompts", {}).values())
    polls = int(stats["poll_requests"])
    creates = int(stats["create_requests"])
    gap = worker.get("mean_poll_gap_wall")
    nominal = {"gather-10s": 10.0, "gather-2s": 2.0, "documented": 10.0}.get(competitor)
    return {
        "competitor": competitor,
        "jobs_run": n_run,
        "extrapolated_from": n_run if extrapolated else None,
        "makespan_s": makespan,
        "status_requests_per_job": polls / n_run,
        "requests_per_job": (polls + creates) / n_run,
        "mean_delay_s": sum(delays) / len(delays) if delays else None,
        "p99_delay_s": _percentile(delays, 0.99),
        "http_429": int(stats["rate_limited"]),
        "succeeded": ok,
        "failed": n_run - ok,
        "lost": lost,
        "duplicates": duplicates,
        "generations_billed": int(stats["generations_created"]),
        "cpu_s_per_1k_jobs": worker["cpu_seconds"] / n_run * 1000.0,
        "cpu_s": worker["cpu_seconds"],
        "client_cpu_share": _cpu_share(worker),
        "peak_rss_mb": worker["peak_rss_bytes"] / 2**20,
        "rss_growth_mb": (worker["peak_rss_bytes"] - worker["baseline_rss_bytes"]) / 2**20,
        "timed_out": bool(worker["timed_out"]),
        "achieved_poll_interval_s": gap / scale if gap is not None else None,
        "nominal_poll_interval_s": nominal,
        "faults_injected": stats.get("faults_injected", {}),
        "errors_sample": sorted({str(j["error"]).split(":")[0] for j in jobs if j["error"]})[:6],
        "notes": worker.get("notes", []),
    }


# ---------------------------------------------------------------------- running


def _run_worker(spec: Spec, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="veo-bench-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (
            os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else ""
        )
        cmd = [sys.executable, "-m", "benchmarks.competitors", str(spec_path), str(out_path)]
        subprocess.run(cmd, check=True, timeout=timeout, cwd=ROOT, env=env)
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


SLOW_RESPONSE_S = 5.0
"""Real-time seconds a ``slow_response`` fault holds its answer (scaled with the cell, like
every other time: the emulator's own default is 5 *wall* seconds, which at scale 0.0025 was
2,000 s of real time per slow answer and made the faults cells measure that artefact)."""


def cell_settings(cell: Cell) -> dict[str, Any]:
    """The emulator settings of one cell: its condition's, at the cell's time scale."""
    settings: dict[str, Any] = {**CONDITIONS[cell.condition], "time_scale": cell.scale}
    faults = dict(settings["faults"])
    faults["slow_response_delay"] = SLOW_RESPONSE_S * cell.scale
    settings["faults"] = faults
    return settings


def run_cell(emu: BenchEmulatorProcess, cell: Cell, log: Any) -> dict[str, Any]:
    """Run every competitor of one cell against the same emulator settings."""
    settings = cell_settings(cell)
    emu.configure(settings)
    runs: list[dict[str, Any]] = []
    durations: dict[str, float] = {}
    ideal_wall = 45.0 * cell.scale * max(1.0, cell.n / MAX_CONCURRENT)
    for competitor in cell.competitors:
        emu.reset()
        tag = f"{cell.name}-{competitor}"
        ids: list[str] = []
        prompts: list[str] = []
        count = cell.n
        if competitor == "documented" and cell.documented_sample:
            count = min(cell.n, cell.documented_sample)
        if cell.condition == "poller":
            ids = emu.precreate(cell.n, prefix=f"bench {cell.name}", key=API_KEY)
        else:
            prompts = [f"bench {cell.name} job {i}" for i in range(count)]
        deadline = 30.0 + 4.0 * ideal_wall
        if competitor == "documented":
            deadline = 30.0 + 70.0 * cell.scale * count
        spec = Spec(competitor, emu.base_url, cell.scale, prompts, ids, deadline)
        tick = time.monotonic()
        try:
            worker = _run_worker(spec, timeout=deadline + 120.0)
        except subprocess.TimeoutExpired:
            print(f"  {tag}: did not stop by its deadline; killed, left out", file=log)
            continue
        stats = emu.stats()
        figures = measure(cell, competitor, worker, stats, cell.n)
        figures["wall_s"] = time.monotonic() - tick
        runs.append(figures)
        records = stats.get("generations", [])
        if cell.condition != "poller":
            for record in sorted(records, key=lambda r: r["created_at"]):
                done, began = record["completed_at"], record["started_at"]
                if done is not None and began is not None:
                    durations.setdefault(record["prompt"], (done - began) / cell.scale)
        if cell.condition == "poller" and records:
            last = max(r["completed_at"] or 0.0 for r in records)
            figures["ideal_makespan_s"] = max(0.0, last - worker["started_at"]) / cell.scale
        print(
            f"  {tag}: {figures['wall_s']:.1f} s wall, makespan {figures['makespan_s']:.0f} s, "
            f"{figures['status_requests_per_job']:.2f} polls/job, ok {figures['succeeded']}"
            f"/{figures['jobs_run']}",
            file=log,
            flush=True,
        )
    ideal: float | None = None
    if durations:
        # Generation times are a hash of the seed and the request body, so the same prompt
        # takes the same time in every run of a cell; a prompt no run got a generation for
        # is given the mean.
        mean = sum(durations.values()) / len(durations)
        prompts = [f"bench {cell.name} job {i}" for i in range(cell.n)]
        ideal = ideal_makespan([durations.get(p, mean) for p in prompts], cell.condition)
    for figures in runs:
        cell_ideal = figures.get("ideal_makespan_s", ideal)
        figures["ideal_makespan_s"] = cell_ideal
        figures["makespan_ratio"] = figures["makespan_s"] / cell_ideal if cell_ideal else None
    return {
        "condition": cell.condition,
        "n": cell.n,
        "time_scale": cell.scale,
        "emulator": settings,
        "ideal_makespan_s": ideal,
        "runs": runs,
    }


def machine() -> dict[str, Any]:
    """nproc, memory, Python and CPU model of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_model": cpu,
        "platform": platform.platform(),
    }


def run_plan(cells: list[Cell], log: Any = sys.stderr) -> dict[str, Any]:
    """Start the emulator, run every cell, return the results document."""
    started = time.time()
    tick = time.monotonic()
    results: list[dict[str, Any]] = []
    config = EmulatorConfig(seed=SEED, queue_delay=QUEUE_DELAY)
    emu = BenchEmulatorProcess(config)
    emu.start()
    try:
        for cell in cells:
            print(f"{cell.name} (time_scale {cell.scale})", file=log, flush=True)
            results.append(run_cell(emu, cell, log))
    finally:
        emu.stop()
    return {
        "started_at": started,
        "wall_seconds": time.monotonic() - tick,
        "machine": machine(),
        "settings": {
            "max_concurrent": MAX_CONCURRENT,
            "rate_limit_per_s": RATE_LIMIT,
            "rate_limit_burst": RATE_BURST,
            "queue_delay_s": QUEUE_DELAY,
            "fault_rate": FAULT_RATE,
            "slow_response_s": SLOW_RESPONSE_S,
            "seed": SEED,
        },
        "cells": results,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run the plan, write results JSON, render the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default docs/benchmarks, or a temporary folder with --quick)",
    )
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="veo-bench-quick-"))
        if args.quick
        else ROOT / "docs/benchmarks"
    )
    out.mkdir(parents=True, exist_ok=True)
    cells = quick_plan() if args.quick else default_plan()
    document = run_plan(cells)
    shown = ["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
    document["command"] = shlex.join(shown)
    document["mode"] = "quick" if args.quick else "default"
    (out / "results.json").write_text(json.dumps(document, indent=1))
    from benchmarks.report import render

    render(document, out, with_charts=not args.no_charts)
    print(f"results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
