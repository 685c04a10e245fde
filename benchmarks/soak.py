"""Bounded soak: one big batch against the emulator (its own process) at 20% mixed faults.

Checks, and prints as JSON (``--report`` also writes a Markdown table):

* every input is accounted for exactly once: completed, failed with a typed reason, or
  reported as uncertain (``CreateOutcomeUnknownError``);
* the emulator's ledger has no duplicate generation for a prompt, and no generation that the
  SDK neither returned nor reported as uncertain ("orphans");
* no task and no connection is left open: asyncio tasks and this process's sockets and file
  descriptors (psutil) are counted before the client is made and after it is closed;
* the API key appears nowhere: logs of every logger at DEBUG (captured to a buffer), stdout,
  stderr, the emulator's output, and the message, repr and full traceback of every error.

Usage::

    python -m benchmarks.soak             # 10,000 jobs (a few minutes on 2 cores)
    python -m benchmarks.soak --quick     # 1,000 jobs

The client runs with the SDK's default rate governor (the emulator's 429s are random, not
rate-dependent, 4.4 % of requests: the governor pauses on each and, since they are scattered,
does not pace the batch).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from veo_async import (
    AsyncVeoClient,
    BatchResult,
    CreateOutcomeUnknownError,
    PollPolicy,
    RetryConfig,
    VeoError,
)
from veo_async.emulator import EmulatorConfig, EmulatorProcess, FaultConfig

KEY = "sk-SOAK-7f3a9c2e5b8d4f1a6e0c9b2d7a5f3e1c"


def fault_config(rate: float) -> FaultConfig:
    """Every fault kind mixed: ``rate`` transient faults plus rarer lost/slow/failed jobs."""
    return FaultConfig.mixed(
        rate,
        lost_create=0.005,
        slow_response=0.002,
        slow_response_delay=2.5,
        job_error=0.02,
        completed_without_url=0.005,
    )


def _sockets() -> int:
    proc = psutil.Process()
    try:
        return len(proc.net_connections(kind="inet"))
    except AttributeError:  # psutil < 6
        return len(proc.connections(kind="inet"))


def _fds() -> int:
    try:
        return int(psutil.Process().num_fds())
    except AttributeError:  # Windows
        return -1


async def soak(args: argparse.Namespace, log_buffer: io.StringIO) -> dict[str, Any]:
    """Run the batch and check everything; returns the figures."""
    config = EmulatorConfig(
        time_scale=args.time_scale, seed=args.seed, api_key=KEY, faults=fault_config(args.rate)
    )
    prompts = [f"soak prompt {i}: a lighthouse at dusk" for i in range(args.jobs)]
    with EmulatorProcess(config) as emulator:
        await anyio.sleep(0.2)
        tasks_before = len(asyncio.all_tasks())
        sockets_before = _sockets()
        fds_before = _fds()
        started = time.monotonic()
        results: list[BatchResult] = []
        downloads: collections.Counter[str] = collections.Counter()
        client = AsyncVeoClient(
            KEY,
            base_url=emulator.base_url,
            timeout=httpx.Timeout(args.timeout, connect=5.0),
            retry=RetryConfig(initial_backoff=0.02, max_backoff=0.5, max_retry_after=0.5),
            poll_policy=PollPolicy(time_scale=args.time_scale),
            limits=httpx.Limits(max_connections=args.concurrency),
        )
        async with client:
            async with client.batch(
                prompts,
                max_concurrency=args.concurrency,
                job_timeout=args.job_timeout,
                max_poll_failures=8,
                buffer=256,
            ) as batch:
                async for result in batch:
                    results.append(result)
            uncertain = [i for i, _ in batch.uncertain()]
            pending = batch.pending()
            unsubmitted = batch.unsubmitted()
            stop_reason = batch.stop_reason
            transport = client.transport_name
            with tempfile.TemporaryDirectory() as folder:
                for r in [r for r in results if r.ok][: args.downloads]:
                    assert r.generation is not None
                    try:
                        await client.download(r.generation, folder)
                        downloads["ok"] += 1
                    except VeoError as exc:
                        downloads[type(exc).__name__] += 1
                leftovers = [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]
        elapsed = time.monotonic() - started
        await anyio.sleep(0.2)  # let closed sockets leave the table
        tasks_after = len(asyncio.all_tasks())
        sockets_after = _sockets()
        fds_after = _fds()
        stats = emulator.stats()
        emulator_output = "\n".join(emulator.output)

    by_index = collections.Counter(r.index for r in results)
    outcome: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for r in results:
        if r.ok:
            outcome["completed"] += 1
        elif isinstance(r.error, CreateOutcomeUnknownError):
            outcome["uncertain"] += 1
        else:
            outcome["failed"] += 1
            reasons[type(r.error).__name__] += 1
    ids = {r.generation_id for r in results if r.generation_id}
    ids |= {p.generation_id for p in pending}
    uncertain_prompts = {prompts[i] for i in uncertain}
    orphans = [
        g["id"]
        for g in stats["generations"]
        if g["id"] not in ids and g["prompt"] not in uncertain_prompts
    ]
    duplicates = stats["duplicate_prompts"]
    unreported = {p: v for p, v in duplicates.items() if p not in uncertain_prompts}
    uncertain_made = sum(1 for g in stats["generations"] if g["prompt"] in uncertain_prompts)

    # the key, everywhere we can look
    errors = [r.error for r in results if r.error is not None]
    texts = [log_buffer.getvalue(), emulator_output]
    seen_types: set[type] = set()
    for err in errors:
        texts += [str(err), repr(err)]
        if type(err) not in seen_types:
            seen_types.add(type(err))
            texts.append("".join(traceback.format_exception(err)))
    key_hits = sum(text.count(KEY) for text in texts)

    return {
        "jobs": args.jobs,
        "fault_rate": args.rate,
        "time_scale": args.time_scale,
        "concurrency": args.concurrency,
        "transport": transport,
        "governor": "default",
        "elapsed_s": round(elapsed, 1),
        "results": len(results),
        "inputs_missing": args.jobs - len(by_index),
        "inputs_reported_twice": sum(1 for n in by_index.values() if n > 1),
        "completed": outcome["completed"],
        "failed": outcome["failed"],
        "failed_by_reason": dict(reasons.most_common()),
        "uncertain": outcome["uncertain"],
        "uncertain_listed": len(uncertain),
        "uncertain_that_made_a_generation": uncertain_made,
        "pending": len(pending),
        "unsubmitted": len(unsubmitted),
        "stop_reason": stop_reason,
        "ledger": {
            "create_requests": stats["create_requests"],
            "generations_created": stats["generations_created"],
            "poll_requests": stats["poll_requests"],
            "download_requests": stats["download_requests"],
            "rate_limited": stats["rate_limited"],
            "faults_injected": stats["faults_injected"],
            "faults_injected_total": sum(stats["faults_injected"].values()),
            "credits_charged": stats["credits_charged"],
            "cdn_requests_with_authorization": stats["cdn_requests_with_authorization"],
        },
        "duplicate_prompts": len(duplicates),
        "unreported_duplicates": len(unreported),
        "orphan_generations": len(orphans),
        "downloads": dict(downloads),
        "download_leftovers": len(leftovers),
        "tasks_before": tasks_before,
        "tasks_after": tasks_after,
        "sockets_before": sockets_before,
        "sockets_after": sockets_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "key_occurrences": key_hits,
        "log_bytes_scanned": len(log_buffer.getvalue()),
    }


def verdict(f: dict[str, Any], captured_out: str, captured_err: str) -> list[str]:
    """The failed checks (empty when everything holds)."""
    problems = []
    if f["inputs_missing"] or f["inputs_reported_twice"]:
        problems.append("inputs not accounted exactly once")
    if f["completed"] + f["failed"] + f["uncertain"] != f["jobs"]:
        problems.append("outcomes do not add up to the inputs")
    if f["unreported_duplicates"] or f["duplicate_prompts"]:
        problems.append("duplicate generations")
    if f["orphan_generations"]:
        problems.append("generations nobody was told about")
    if f["uncertain"] != f["uncertain_listed"]:
        problems.append("uncertain results and batch.uncertain() disagree")
    if f["tasks_after"] > f["tasks_before"]:
        problems.append("tasks left running")
    if f["sockets_after"] > f["sockets_before"]:
        problems.append("sockets left open")
    if f["fds_after"] > f["fds_before"]:
        problems.append("file descriptors left open")
    if f["ledger"]["cdn_requests_with_authorization"]:
        problems.append("the key was sent to the video host")
    if f["download_leftovers"]:
        problems.append("partial download files left behind")
    if f["key_occurrences"] or KEY in captured_out or KEY in captured_err:
        problems.append("the API key leaked")
    return problems


def markdown(f: dict[str, Any], command: str, problems: list[str]) -> str:
    """The figures as a Markdown section."""
    cpu = psutil.cpu_count(logical=True)
    mem = psutil.virtual_memory().total / 2**30
    machine = (
        f"{platform.system()} {platform.release()}, {platform.machine()}, {cpu} logical CPUs, "
        f"{mem:.1f} GiB RAM, Python {platform.python_version()}"
    )
    led = f["ledger"]
    rows = [
        ("inputs", f["jobs"]),
        ("completed (with a video)", f["completed"]),
        (
            "failed with a typed reason",
            f"{f['failed']} ({', '.join(f'{k}: {v}' for k, v in f['failed_by_reason'].items())})",
        ),
        ("reported uncertain (CreateOutcomeUnknownError)", f["uncertain"]),
        ("... of which the server had made a generation", f["uncertain_that_made_a_generation"]),
        (
            "inputs missing / reported twice",
            f"{f['inputs_missing']} / {f['inputs_reported_twice']}",
        ),
        (
            "duplicate generations (any / unreported)",
            f"{f['duplicate_prompts']} / {f['unreported_duplicates']}",
        ),
        ("generations nobody was told about", f["orphan_generations"]),
        ("faults injected", led["faults_injected_total"]),
        (
            "create / poll / download requests",
            f"{led['create_requests']} / {led['poll_requests']} / {led['download_requests']}",
        ),
        ("429 responses", led["rate_limited"]),
        ("CDN requests with Authorization", led["cdn_requests_with_authorization"]),
        ("downloads", ", ".join(f"{k}: {v}" for k, v in f["downloads"].items())),
        ("asyncio tasks before / after", f"{f['tasks_before']} / {f['tasks_after']}"),
        ("sockets before / after", f"{f['sockets_before']} / {f['sockets_after']}"),
        ("file descriptors before / after", f"{f['fds_before']} / {f['fds_after']}"),
        ("key occurrences (logs, stdout, stderr, errors, tracebacks)", f["key_occurrences"]),
        ("wall time", f"{f['elapsed_s']} s"),
    ]
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine}; transport `{f['transport']}`, governor {f['governor']}, "
        f"time scale {f['time_scale']}, concurrency {f['concurrency']}.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Verdict: " + ("all checks hold." if not problems else "FAILED: " + "; ".join(problems)),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 jobs instead of 10,000")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--rate", type=float, default=0.2, help="mixed transient fault rate")
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=2.0, help="client read timeout (s)")
    parser.add_argument("--job-timeout", type=float, default=120.0)
    parser.add_argument("--downloads", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, default=None, help="write Markdown figures here")
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = 1000 if args.quick else 10_000
    command = "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:])

    log_buffer = io.StringIO()
    handler = logging.StreamHandler(log_buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            figures = asyncio.run(soak(args, log_buffer))
    finally:
        root.removeHandler(handler)
    problems = verdict(figures, out.getvalue(), err.getvalue())
    figures["captured_stdout_bytes"] = len(out.getvalue())
    figures["captured_stderr_bytes"] = len(err.getvalue())
    figures["problems"] = problems
    print(json.dumps(figures, indent=2))
    if args.report is not None:
        args.report.write_text(markdown(figures, command.strip(), problems))
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
