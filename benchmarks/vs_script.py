"""veo-async against a competent hand-written poller (issue 16).

    python -m benchmarks.vs_script --sizes 100,200 --scenarios limits,rate,faults
    python -m benchmarks.vs_script --sizes 1000 --scenarios limits --append
    python -m benchmarks.vs_script --sizes 10000 --slow     # 10,000 jobs: about 15 min per run
    python -m benchmarks.vs_script --sizes 100 --scenarios rate --seeds 1,2,3,4,5

The opponent is :mod:`benchmarks.handwritten` (competitor ``script``); veo-async runs as
``benchmarks.run``'s ``veo_async`` competitor (``client.batch`` with its defaults, told the time
scale). Both run in their own subprocess against one emulator process
(:mod:`benchmarks._emuserver`: 50 generating per key, 1 s queue delay, Veo2 timing) at time
scale 0.1; scenario settings are ``benchmarks.run``'s (``limits``; ``rate``: +10 requests/s,
burst 10; ``faults``: +``FaultConfig.mixed(0.1)``). Every time is a real-time equivalent (wall
seconds / scale).

Figures per run (from the worker's report, the emulator ledger and the emulator's event log):

* makespan: first request to the last job noticed; ideal: the limits' bound for these jobs.
* status requests per job: polls the emulator received / N.
* detection delay: when the client noticed a job had ended minus the ledger's ``completed_at``.
* 429s: all; after the first burst, i.e. answered more than ``BURST_WINDOW_S`` (10 s) after
  the run's *first 429* (10 s at 10 requests/s is 100 tokens: enough for any client to have
  learned the limit); and, as the first version of this report counted them, more than 10 s
  after the run's first request. (A client that holds creates back meets the limit later
  than in its first 10 s: its first burst comes when its demand first exceeds the limit.)
* lost: generations that completed on the server (paid) but the client never delivered;
  failed: inputs not delivered as a success (includes the script's uncertain creates that
  made no job, and generations that ended in error).
* most paid-but-not-started: the largest number of generations created (so charged) and not
  yet started by the server at any moment, from the ledger's ``created_at``/``started_at``
  (a job is queued at least the 1 s queue delay, so a burst of creates counts fully); in
  brackets, "held back": the same, counting a job only past its queue delay, i.e. the jobs
  waiting for one of the 50 slots.
* client CPU share: client CPU seconds per wall second (1.0 = one core busy); above 0.8 the
  run is flagged client CPU-bound.
* seed (``--seeds``): the emulator's seed, which decides every generation time; a cell run
  over several seeds (one emulator process each) shows how much of a makespan difference is
  the draw of durations rather than the client.
* create-order bound (notes): the makespan the server alone gives this run's creates, in the
  order and at the times the ledger shows them, every completion noticed at once (FIFO on the
  50 slots, each job ready after the queue delay, the ledger's generation times). The
  makespan minus this bound is what noticing the completions cost; the bound itself moves
  with which generation times the create order puts in the last wave (generation times are a
  hash of the seed and the prompt, so at N = 100 one long job created late decides it: the
  same create times in input order and in a retry-shuffled order differ by up to 6 s, issue 16).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._emuserver import BenchEmulatorProcess
from benchmarks.competitors import Spec
from benchmarks.run import (
    MAX_CONCURRENT,
    QUEUE_DELAY,
    SEED,
    Cell,
    _list_schedule,
    _run_worker,
    cell_settings,
    ideal_makespan,
    machine,
    measure,
)
from veo_async.emulator import EmulatorConfig

__all__ = [
    "BURST_WINDOW_S",
    "CLIENTS",
    "SCENARIOS",
    "main",
    "create_order_bound",
    "paid_not_started_max",
    "render",
    "run_matrix",
]

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS: dict[str, str] = {"limits": "limits", "rate": "rate_limited", "faults": "faults"}
"""Command-line scenario name -> ``benchmarks.run`` condition."""
CLIENTS: tuple[str, ...] = ("script", "veo_async", "veo_async-httpx")
"""``veo_async``: the SDK's default where httpx-aiohttp is installed (its aiohttp transport);
``veo_async-httpx``: ``fast_transport=False``, what a plain ``pip install veo-async`` runs."""
SCALE = 0.1
BURST_WINDOW_S = 10.0
"""Real-time seconds after the first 429 during which 429s count as the first burst."""
CPU_BOUND = 0.8
RAW_DIR: Path | None = None
"""``--raw DIR``: where each run's raw data goes (worker jobs, ledger, every answer), or None."""


def create_order_bound(
    records: list[dict[str, Any]], started_at: float, scale: float
) -> float | None:
    """Real-time seconds from ``started_at`` (wall) to the last completion the server alone
    gives these creates (ledger order and times, FIFO on ``MAX_CONCURRENT`` slots, each ready
    after the queue delay), or ``None`` without a completed job."""
    done = [
        r
        for r in records
        if r.get("created_at") is not None
        and r.get("started_at") is not None
        and r.get("completed_at") is not None
    ]
    if not done:
        return None
    done.sort(key=lambda r: float(r["created_at"]))
    ready = [float(r["created_at"]) + QUEUE_DELAY * scale for r in done]
    durations = [float(r["completed_at"]) - float(r["started_at"]) for r in done]
    end = _list_schedule(durations, ready, MAX_CONCURRENT)
    return max(0.0, end - started_at) / scale


def paid_not_started_max(records: list[dict[str, Any]], grace: float = 0.0) -> int:
    """Most generations created (so paid) but not yet started at any one moment.

    From the ledger's ``created_at``/``started_at`` (wall seconds). A job counts from
    ``created_at + grace`` until it starts (or the end, if it never did): ``grace = 0`` counts
    every paid job the server has not started; ``grace`` = the emulator's queue delay counts
    only the jobs held back by the concurrency limit.
    """
    events: list[tuple[float, int]] = []
    for record in records:
        waits_from = float(record["created_at"]) + grace
        started = record.get("started_at")
        if started is not None and float(started) <= waits_from:
            continue
        events.append((waits_from, 1))
        if started is not None:
            events.append((float(started), -1))
    # At equal times, starts before creates.
    events.sort(key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _one_run(
    emu: BenchEmulatorProcess, cell: Cell, client: str, scale: float, log: Any
) -> dict[str, Any] | None:
    emu.reset()
    emu.events(clear=True)
    prompts = [f"bench {cell.name} job {i}" for i in range(cell.n)]
    ideal_wall = 45.0 * scale * max(1.0, cell.n / MAX_CONCURRENT)
    deadline = 30.0 + 4.0 * ideal_wall
    spec = Spec(client, emu.base_url, scale, prompts, [], deadline)
    tick = time.monotonic()
    try:
        worker = _run_worker(spec, timeout=deadline + 120.0)
    except subprocess.TimeoutExpired:
        print(f"  {cell.name} {client}: did not stop by its deadline; killed", file=log)
        return None
    stats = emu.stats()
    events = emu.events()
    figures = measure(cell, client, worker, stats, cell.n)
    first = events["first_request_at"]
    start_end = (first if first is not None else worker["started_at"]) + BURST_WINDOW_S * scale
    burst_end = (min(events["rate_limited_at"], default=0.0)) + BURST_WINDOW_S * scale
    times: list[float] = events["rate_limited_at"]
    records: list[dict[str, Any]] = stats.get("generations", [])
    figures.update(
        {
            "wall_s": time.monotonic() - tick,
            "http_429_after_burst": sum(1 for t in times if t > burst_end),
            "http_429_after_10s": sum(1 for t in times if t > start_end),
            "paid_not_started_max": paid_not_started_max(records),
            "held_back_max": paid_not_started_max(records, QUEUE_DELAY * scale + 1e-3),
            "create_order_bound_s": create_order_bound(records, worker["started_at"], scale),
            "cpu_bound": (figures["client_cpu_share"] or 0.0) > CPU_BOUND,
            "not_delivered": figures["failed"],
        }
    )
    durations = {
        r["prompt"]: (r["completed_at"] - r["started_at"]) / scale
        for r in records
        if r["completed_at"] is not None and r["started_at"] is not None
    }
    figures["_durations"] = durations
    if RAW_DIR is not None:
        RAW_DIR.mkdir(parents=True, exist_ok=True)
        raw = {"scale": scale, "worker": worker, "generations": records, "events": events}
        (RAW_DIR / f"{cell.condition}-{cell.n}-{client}.json").write_text(json.dumps(raw))
    print(
        f"  {cell.name} {client}: {figures['wall_s']:.1f} s wall, makespan "
        f"{figures['makespan_s']:.0f} s, {figures['status_requests_per_job']:.1f} polls/job, "
        f"delay {figures['mean_delay_s'] or 0:.1f}/{figures['p99_delay_s'] or 0:.1f} s, "
        f"429 {figures['http_429']} ({figures['http_429_after_burst']} after burst), "
        f"ok {figures['succeeded']}/{cell.n}, cpu {figures['client_cpu_share'] or 0:.2f}, "
        f"create-order bound {figures['create_order_bound_s'] or 0:.0f} s",
        file=log,
        flush=True,
    )
    return figures


def run_matrix(
    sizes: list[int],
    scenarios: list[str],
    clients: list[str],
    scale: float = SCALE,
    log: Any = sys.stderr,
    seeds: tuple[int, ...] = (SEED,),
) -> dict[str, Any]:
    """Run every (size, scenario, client) against one emulator process per seed; return
    the document."""
    started = time.time()
    tick = time.monotonic()
    cells: list[dict[str, Any]] = []
    for seed in seeds:
        cells += _run_seed(seed, sizes, scenarios, clients, scale, log)
    return {
        "started_at": started,
        "wall_seconds": time.monotonic() - tick,
        "machine": machine(),
        "burst_window_s": BURST_WINDOW_S,
        "cells": cells,
    }


def _run_seed(
    seed: int,
    sizes: list[int],
    scenarios: list[str],
    clients: list[str],
    scale: float,
    log: Any,
) -> list[dict[str, Any]]:
    """The cells of one emulator seed (the seed decides every generation time)."""
    cells: list[dict[str, Any]] = []
    emu = BenchEmulatorProcess(EmulatorConfig(seed=seed, queue_delay=QUEUE_DELAY))
    emu.start()
    try:
        for n in sizes:
            for scenario in scenarios:
                cell = Cell(SCENARIOS[scenario], n, scale, list(clients))
                settings = cell_settings(cell)
                emu.configure(settings)
                print(f"{scenario}/N={n} (time_scale {scale}, seed {seed})", file=log, flush=True)
                runs = [r for c in clients if (r := _one_run(emu, cell, c, scale, log))]
                durations: dict[str, float] = {}
                for run in runs:
                    for prompt, d in run.pop("_durations").items():
                        durations.setdefault(prompt, d)
                ideal = None
                if durations:
                    mean = sum(durations.values()) / len(durations)
                    prompts = [f"bench {cell.name} job {i}" for i in range(n)]
                    ideal = ideal_makespan(
                        [durations.get(p, mean) for p in prompts], cell.condition
                    )
                for run in runs:
                    run["ideal_makespan_s"] = ideal
                    run["makespan_ratio"] = run["makespan_s"] / ideal if ideal else None
                cells.append(
                    {
                        "scenario": scenario,
                        "condition": cell.condition,
                        "n": n,
                        "time_scale": scale,
                        "seed": seed,
                        "emulator": settings,
                        "ideal_makespan_s": ideal,
                        "runs": runs,
                    }
                )
    finally:
        emu.stop()
    return cells


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _seed_note(cell: dict[str, Any]) -> str:
    seed = cell.get("seed", SEED)
    return "" if seed == SEED else f" (seed {seed})"


def _scale_note(cell: dict[str, Any]) -> str:
    scale = cell.get("time_scale", SCALE)
    seed = cell.get("seed", SEED)
    notes = ([] if scale == SCALE else [f"scale {scale:g}"]) + (
        [] if seed == SEED else [f"seed {seed}"]
    )
    return f" ({', '.join(notes)})" if notes else ""


def render(document: dict[str, Any]) -> str:
    """The Markdown page: one table over every cell, then the notes."""
    lines = [
        "# veo-async against a competent hand-written poller",
        "",
        "Generated by `benchmarks/vs_script.py` (see its docstring for every definition).",
        "",
    ]
    for command in document.get("commands", []):
        lines.append(f"    {command}")
    m = document["machine"]
    lines += [
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory']}, "
        f"{m['implementation']} {m['python']}. **Shared and noisy**: other engineers' builds "
        "and tests ran at the same time, so makespans and delays move by several percent from "
        "run to run and CPU shares include contention; each figure is one run.",
        "",
        *([f"**{document['warning']}**", ""] if document.get("warning") else []),
        "Emulator in its own process: 50 generating per key, 1 s queue delay, Veo2 timing "
        "(about 45 s per clip), time scale 0.1 unless the notes per run say otherwise; `rate`: "
        "10 requests/s, burst 10; `faults`: `FaultConfig.mixed(0.1)`. Times are real-time "
        "equivalents (wall s / the scale). "
        f"429s: all (after the first burst: later than {document['burst_window_s']:g} s "
        "after the run's first 429; after 10 s: later than 10 s after its first request).",
        "",
        "| scenario | N | client | makespan s (x ideal) | status req/job | mean delay s "
        "| p99 delay s | 429s (after 1st burst; after 10 s) | lost | not delivered "
        "| max paid-not-started (held back) | client CPU share |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in document["cells"]:
        for run in cell["runs"]:
            ratio = run["makespan_ratio"]
            makespan = _f(run["makespan_s"], 0) + (f" ({ratio:.2f}x)" if ratio else "")
            share = _f(run["client_cpu_share"], 2) + (" **CPU-bound**" if run["cpu_bound"] else "")
            if run["timed_out"]:
                makespan += " **deadline**"
            lines.append(
                f"| {cell['scenario']}{_seed_note(cell)} | {cell['n']:,} | {run['competitor']} "
                f"| {makespan} "
                f"| {_f(run['status_requests_per_job'])} | {_f(run['mean_delay_s'])} "
                f"| {_f(run['p99_delay_s'])} | {run['http_429']} ({run['http_429_after_burst']}; "
                f"{run.get('http_429_after_10s', run['http_429_after_burst'])}) "
                f"| {run['lost']} | {run['not_delivered']} | {run['paid_not_started_max']} "
                f"({run['held_back_max']}) "
                f"| {share} |"
            )
    lines += ["", "Notes per run:", ""]
    for cell in document["cells"]:
        for run in cell["runs"]:
            notes = "; ".join(run.get("notes", []))
            bound = run.get("create_order_bound_s")
            if bound is not None:
                notes = (notes + "; " if notes else "") + f"create-order bound {bound:,.0f} s"
            errors = ", ".join(run.get("errors_sample", []))
            lines.append(
                f"- {cell['scenario']}/N={cell['n']}{_scale_note(cell)} {run['competitor']}: "
                f"{notes or '-'}" + (f"; errors: {errors}" if errors else "")
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: run the matrix, write JSON and Markdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vs_script", description=__doc__)
    parser.add_argument("--sizes", default="100,200", help="comma-separated N (default 100,200)")
    parser.add_argument(
        "--scenarios", default="limits,rate,faults", help="any of limits,rate,faults"
    )
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--scale", type=float, default=SCALE)
    parser.add_argument(
        "--seeds",
        default=str(SEED),
        help=f"comma-separated emulator seeds (default {SEED}); each seed draws other "
        "generation times, so the same cell over several seeds averages out which long jobs "
        "a create order puts in the last wave",
    )
    parser.add_argument("--slow", action="store_true", help="allow N >= 10,000 (slow)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs/benchmarks", help="folder for vs-script.*"
    )
    parser.add_argument(
        "--append", action="store_true", help="add these cells to an existing vs-script.json"
    )
    parser.add_argument(
        "--raw", type=Path, default=None, help="also write each run's raw data to this folder"
    )
    args = parser.parse_args(argv)
    global RAW_DIR
    RAW_DIR = args.raw
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if any(n >= 10_000 for n in sizes) and not args.slow:
        parser.error("N >= 10,000 takes about 15 minutes per run; pass --slow")
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    clients = [c for c in args.clients.split(",") if c]
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    document = run_matrix(sizes, scenarios, clients, args.scale, seeds=seeds)
    shown = ["python", "-m", "benchmarks.vs_script", *(argv if argv is not None else sys.argv[1:])]
    document["commands"] = [shlex.join(shown)]
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "vs-script.json"
    if args.append and json_path.exists():
        previous: dict[str, Any] = json.loads(json_path.read_text())
        document["cells"] = previous["cells"] + document["cells"]
        document["commands"] = previous.get("commands", []) + document["commands"]
    json_path.write_text(json.dumps(document, indent=1))
    (args.out / "vs-script.md").write_text(render(document))
    print(f"results in {args.out / 'vs-script.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
