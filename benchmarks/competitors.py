"""The competitors, each run in its own subprocess: ``python -m benchmarks.competitors SPEC OUT``.

``SPEC`` is a JSON :class:`Spec`; the worker writes a JSON :class:`WorkerResult` to ``OUT``.
Every worker stamps ``time.time()`` at the moment it learns a job is done, so the harness can
compare it with the emulator ledger's wall-clock ``completed_at`` (same machine, same clock).
CPU seconds and peak RSS are this process's own (``resource.getrusage``); the emulator runs in
another process and is not counted.

Competitors (all take times in *real-time* seconds and multiply them by ``scale``, the
emulator's ``time_scale``, before sleeping):

``documented``
    The provider's documented loop, sync, one prompt at a time: ``POST`` the create (an error
    status is printed and the prompt skipped), then ``GET`` immediately and every 10 s while the
    status is ``waiting``/``active``/``queued``/``generating``; anything else ends the loop as
    "complete" (so an error body ends it too, as in the guide), 1000 s timeout. Module-level
    ``httpx.post``/``httpx.get`` (a new connection per call, like ``requests.post``). One
    exception per prompt is caught so the run goes on (the guide's script would die).
``gather-10s`` / ``gather-2s``
    The usual hand-written async script: ``asyncio.gather(*(one(p) for p in prompts),
    return_exceptions=True)`` over one shared ``httpx.AsyncClient()`` (its defaults: 100
    connections, 5 s timeouts); each coroutine creates, then sleeps the interval and polls until
    ``completed``/``error``; ``raise_for_status()`` and no retries. For ``poller`` scenarios
    the coroutines only poll existing ids.
``script``
    The competent hand-written poller of issue 16 (:mod:`benchmarks.handwritten`): pool and
    semaphore of 32, ``Retry-After`` honoured, creates never re-sent after a send, first poll
    at 30 s then every 5 s.
``veo_async``
    ``client.batch(prompts)`` (or ``client.as_completed(ids)``) with the SDK's defaults. The
    SDK thinks in real-time seconds, so it is told the emulator's time scale: natively when
    the installed SDK has a ``time_scale`` option, otherwise through :func:`scaled_sdk_options`
    (documented there and in the report).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

__all__ = [
    "COMPETITORS",
    "EXTRA_COMPETITORS",
    "JobRecord",
    "Spec",
    "WorkerResult",
    "main",
    "run_worker",
    "scaled_sdk_options",
]

PATH = "/v2/video/generations"
API_KEY = "bench-key"
RUNNING = ("waiting", "active", "queued", "generating")
"""Statuses the provider's example loop keeps waiting on."""

COMPETITORS: tuple[str, ...] = ("documented", "gather-10s", "gather-2s", "veo_async")
"""The competitors of ``benchmarks.run``'s plans."""
EXTRA_COMPETITORS: tuple[str, ...] = ("script", "veo_async-httpx")
"""Competitors this worker also runs (used by :mod:`benchmarks.vs_script`): ``script``
(:mod:`benchmarks.handwritten`) and ``veo_async-httpx`` (``veo_async`` with
``fast_transport=False``, what a plain ``pip install veo-async`` runs)."""


@dataclass
class Spec:
    """What one worker run does."""

    competitor: str
    base_url: str
    scale: float
    """The emulator's time_scale: wall seconds per real-time second."""
    prompts: list[str] = field(default_factory=list)
    """Prompts to submit (empty for a poller run)."""
    ids: list[str] = field(default_factory=list)
    """Existing generation ids to track (poller runs)."""
    deadline: float = 60.0
    """Wall seconds after which the worker stops and reports what it has."""


@dataclass
class JobRecord:
    """What a competitor knows about one input at the end."""

    index: int
    generation_id: str | None = None
    ok: bool = False
    noticed_at: float | None = None
    """``time.time()`` when the competitor learned the job was done (completed or error)."""
    polls: int = 0
    error: str | None = None


@dataclass
class WorkerResult:
    """What a worker reports back to the harness."""

    competitor: str
    started_at: float
    finished_at: float
    cpu_seconds: float
    peak_rss_bytes: int
    baseline_rss_bytes: int
    jobs: list[JobRecord]
    client_429s: int = 0
    timed_out: bool = False
    mean_poll_gap_wall: float | None = None
    """Mean wall seconds between two polls of one job (fixed-interval competitors)."""
    notes: list[str] = field(default_factory=list)


def _rss_bytes() -> int:
    """Peak RSS of this process image: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which
    a child inherits from the parent it was forked from)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


class _Gaps:
    """Accumulates the wall time between consecutive polls of the same job."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, gap: float) -> None:
        self.total += gap
        self.count += 1

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


# ---------------------------------------------------------------------- documented (sync)


def run_documented(spec: Spec, jobs: list[JobRecord], gaps: _Gaps) -> bool:
    """The provider's example loop, one prompt after the other. Returns True on deadline."""
    url = spec.base_url + PATH
    interval = 10.0 * spec.scale
    give_up = 1000.0 * spec.scale
    stop_at = time.monotonic() + spec.deadline
    for job, prompt in zip(jobs, spec.prompts, strict=True):
        if time.monotonic() > stop_at:
            return True
        try:
            body = {"model": "veo2", "prompt": prompt}
            response = httpx.post(url, json=body, headers=_headers())
            if response.status_code >= 400:
                job.error = f"create HTTP {response.status_code}"
                continue
            gid = response.json().get("id")
            job.generation_id = gid
            if not gid:
                job.error = "no id"
                continue
            start = time.time()
            last_poll: float | None = None
            while time.time() - start < give_up:
                data = httpx.get(url, params={"generation_id": gid}, headers=_headers()).json()
                now = time.monotonic()
                if last_poll is not None:
                    gaps.add(now - last_poll)
                last_poll = now
                job.polls += 1
                status = data.get("status")
                if status in RUNNING:
                    time.sleep(interval)
                else:
                    job.noticed_at = time.time()
                    video = data.get("video") or {}
                    job.ok = status == "completed" and bool(video.get("url"))
                    if not job.ok:
                        job.error = f"ended with status {status!r}"
                    break
            else:
                job.error = "timeout"
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            job.error = f"{type(exc).__name__}: {exc}"[:200]
    return False


# ---------------------------------------------------------------------- asyncio.gather


async def _gather_one(
    client: httpx.AsyncClient,
    job: JobRecord,
    prompt: str | None,
    interval: float,
    gaps: _Gaps,
    counter: list[int],
) -> None:
    try:
        if job.generation_id is None:
            response = await client.post(PATH, json={"model": "veo2", "prompt": prompt})
            if response.status_code == 429:
                counter[0] += 1
            response.raise_for_status()
            job.generation_id = response.json()["id"]
        gid = job.generation_id
        last_poll: float | None = None
        while True:
            await asyncio.sleep(interval)
            response = await client.get(PATH, params={"generation_id": gid})
            now = time.monotonic()
            if last_poll is not None:
                gaps.add(now - last_poll)
            last_poll = now
            job.polls += 1
            if response.status_code == 429:
                counter[0] += 1
            response.raise_for_status()
            data = response.json()
            if data["status"] == "completed":
                job.noticed_at = time.time()
                job.ok = bool((data.get("video") or {}).get("url"))
                if not job.ok:
                    job.error = "completed without a video"
                return
            if data["status"] == "error":
                job.noticed_at = time.time()
                job.error = "generation error"
                return
    except Exception as exc:
        job.error = f"{type(exc).__name__}: {exc}"[:200]
        raise


async def run_gather(spec: Spec, jobs: list[JobRecord], gaps: _Gaps, counter: list[int]) -> bool:
    """The hand-written ``asyncio.gather`` script. Returns True on deadline."""
    interval = (10.0 if spec.competitor == "gather-10s" else 2.0) * spec.scale
    prompts: Sequence[str | None] = spec.prompts if spec.prompts else [None] * len(jobs)
    async with httpx.AsyncClient(base_url=spec.base_url, headers=_headers()) as client:
        coros = [
            _gather_one(client, job, prompt, interval, gaps, counter)
            for job, prompt in zip(jobs, prompts, strict=True)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*coros, return_exceptions=True), spec.deadline)
        except asyncio.TimeoutError:
            return True
    return False


# ---------------------------------------------------------------------- veo_async


def scaled_sdk_options(scale: float) -> tuple[dict[str, Any], list[str]]:
    """How the SDK is told the emulator's time scale: ``(client kwargs, notes)``.

    If ``AsyncVeoClient`` accepts ``time_scale``, that is all it gets. Otherwise (veo_async
    0.1.0) the client gets ``poll_policy=PollPolicy(time_scale=scale)``, the policy's own
    switch that scales its priors, intervals and queue grace, and a ``RetryConfig`` whose
    backoffs (``initial_backoff``, ``max_backoff``) are multiplied by ``scale``, since the
    retry layer has no such switch. Everything else is the SDK's default; the client's rate
    governor (its 4 s window and recovery per second) stays in wall seconds.
    """
    from veo_async import AsyncVeoClient, PollPolicy, RetryConfig

    if "time_scale" in inspect.signature(AsyncVeoClient).parameters:
        return {"time_scale": scale}, ["AsyncVeoClient(time_scale=...)"]
    if "time_scale" not in inspect.signature(PollPolicy).parameters:
        raise RuntimeError("this veo_async cannot be told a time scale; see benchmarks/README.md")
    defaults = RetryConfig()
    retry = RetryConfig(
        initial_backoff=defaults.initial_backoff * scale,
        max_backoff=defaults.max_backoff * scale,
    )
    note = (
        "PollPolicy(time_scale=...) plus RetryConfig backoffs multiplied by the scale "
        "(the client has no time_scale; its rate governor runs in wall seconds)"
    )
    return {"poll_policy": PollPolicy(time_scale=scale), "retry": retry}, [note]


async def run_sdk(spec: Spec, jobs: list[JobRecord], notes: list[str]) -> tuple[bool, int]:
    """``client.batch`` / ``client.as_completed`` with defaults. Returns (deadline hit, 429s)."""
    from veo_async import AsyncVeoClient, BatchItem

    client_kwargs, extra_notes = scaled_sdk_options(spec.scale)
    notes.extend(extra_notes)
    if spec.competitor == "veo_async-httpx":
        # What a plain ``pip install veo-async`` gets: httpx's own transport.
        client_kwargs["fast_transport"] = False
    async with AsyncVeoClient(API_KEY, base_url=spec.base_url, **client_kwargs) as client:
        inputs: list[Any]
        if spec.prompts:
            inputs = list(spec.prompts)
        else:
            inputs = [BatchItem(generation_id=g) for g in spec.ids]
        batch = client.batch(inputs)
        with anyio.move_on_after(spec.deadline) as scope:
            async with batch:
                async for result in batch:
                    now = time.time()
                    job = jobs[result.index]
                    job.generation_id = result.generation_id
                    job.polls = result.polls
                    if result.generation is not None and result.generation.is_terminal:
                        job.noticed_at = now
                    job.ok = result.ok
                    if result.error is not None:
                        job.error = f"{type(result.error).__name__}: {result.error}"[:200]
        notes.append(f"transport: {client.transport_name}")
        rate_limited = int(getattr(batch.counts, "rate_limited", 0))
    return scope.cancelled_caught, rate_limited


# ---------------------------------------------------------------------- entry point


def run_worker(spec: Spec) -> WorkerResult:
    """Run one competitor to the end (or its deadline) and measure it."""
    count = len(spec.prompts) if spec.prompts else len(spec.ids)
    jobs = [JobRecord(index=i) for i in range(count)]
    if spec.ids:
        for job, gid in zip(jobs, spec.ids, strict=True):
            job.generation_id = gid
    gaps = _Gaps()
    counter = [0]
    notes: list[str] = []
    if spec.competitor.startswith("veo_async"):
        import veo_async  # noqa: F401  (import cost is not part of the run)
        from veo_async._loops import fast_transport_available

        # Nor is the transport's: aiohttp is imported when the client opens (0.3 to 0.5 s, i.e.
        # 3 to 5 s of makespan at time scale 0.1); the script's httpx is imported above too.
        fast_transport_available()
    if spec.competitor == "script":
        import benchmarks.handwritten  # noqa: F401  (import cost is not part of the run)
    baseline_rss = _rss_bytes()
    cpu0 = _cpu()
    started = time.time()
    if spec.competitor == "documented":
        timed_out = run_documented(spec, jobs, gaps)
    elif spec.competitor.startswith("gather-"):
        timed_out = asyncio.run(run_gather(spec, jobs, gaps, counter))
    elif spec.competitor in ("veo_async", "veo_async-httpx"):
        timed_out, counter[0] = asyncio.run(run_sdk(spec, jobs, notes))
    elif spec.competitor == "script":
        from benchmarks.handwritten import ScriptCounters, run_script

        script_counts = ScriptCounters()
        timed_out = asyncio.run(run_script(spec, jobs, script_counts))
        counter[0] = script_counts.http_429
        notes.append(
            f"uncertain creates (never re-sent): {script_counts.uncertain_creates}; "
            f"failed polls: {script_counts.poll_failures}"
        )
    else:
        raise ValueError(f"unknown competitor {spec.competitor!r}")
    finished = time.time()
    return WorkerResult(
        competitor=spec.competitor,
        started_at=started,
        finished_at=finished,
        cpu_seconds=_cpu() - cpu0,
        peak_rss_bytes=_rss_bytes(),
        baseline_rss_bytes=baseline_rss,
        jobs=jobs,
        client_429s=counter[0],
        timed_out=timed_out,
        mean_poll_gap_wall=gaps.mean(),
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.competitors SPEC_JSON_FILE OUT_JSON_FILE``."""
    args = sys.argv[1:] if argv is None else argv
    spec = Spec(**json.loads(Path(args[0]).read_text()))
    result = run_worker(spec)
    Path(args[1]).write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
