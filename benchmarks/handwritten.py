"""The competent hand-written poller of issue 16: what a good engineer writes in an afternoon.

Competitor ``script`` of :mod:`benchmarks.competitors` (run it through that module, in its own
process). Every choice is the careful one, short of building a scheduler:

* One ``httpx.AsyncClient`` whose pool (32 connections, 32 kept alive) matches an
  ``asyncio.Semaphore(32)`` held around every request, so no request waits on the pool and
  none hits httpx's pool timeout however many jobs there are.
* All creates are started at once (the semaphore lets 32 through at a time); each job's
  coroutine then polls its own generation.
* ``429``: the request was refused, so it is retried after ``Retry-After`` (the emulator sends
  it in wall seconds, already scaled; without the header: 1, 2, 4, ... up to 30 real-time
  seconds), outside the semaphore.
* A create is **never re-sent once it may have reached the server**: only a 429 or an error
  raised before the request was sent (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``)
  is retried. Any other failure after sending (5xx, reset, timeout, unreadable body) leaves
  the job uncertain: it is reported failed (``uncertain create``) and never retried, since a
  retry could pay twice.
* First poll 30 s after the create (Veo2 takes about 45 s), then every 5 s, real-time seconds
  multiplied by the emulator's ``time_scale``. A failed poll (any error, a 5xx, an unknown
  status, bad JSON) just waits for the next tick; ``completed`` or ``error`` ends the job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from benchmarks.competitors import JobRecord, Spec

__all__ = ["CONCURRENCY", "FIRST_POLL_S", "POLL_EVERY_S", "ScriptCounters", "run_script"]

CONCURRENCY = 32
"""Semaphore and connection pool size."""
FIRST_POLL_S = 30.0
"""Real-time seconds from a create's answer to the first poll of that job."""
POLL_EVERY_S = 5.0
"""Real-time seconds between two polls of one job after the first."""
MAX_BACKOFF_S = 30.0
"""Cap of the exponential wait after a 429 without ``Retry-After`` (real-time seconds)."""

_PATH = "/v2/video/generations"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Errors raised before any byte of the request reached the server: safe to retry a create."""


@dataclass
class ScriptCounters:
    """What the script counts about its own run."""

    http_429: int = 0
    uncertain_creates: int = 0
    poll_failures: int = 0


def _retry_after(response: httpx.Response, attempt: int, scale: float) -> float:
    """Wall seconds to wait after a 429: its ``Retry-After``, else 1, 2, 4 ... real-time s."""
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return min(MAX_BACKOFF_S, 2.0**attempt) * scale


async def _send(
    client: httpx.AsyncClient,
    sem: asyncio.Semaphore,
    method: str,
    counters: ScriptCounters,
    scale: float,
    **kwargs: Any,
) -> httpx.Response:
    """One request under the semaphore; 429s waited out (Retry-After) and sent again.

    A 429 means the server refused the request, so re-sending it (even a create) is safe.
    Other errors propagate to the caller, which knows whether a retry is safe.
    """
    attempt = 0
    while True:
        async with sem:
            response = await client.request(method, _PATH, **kwargs)
        if response.status_code != 429:
            return response
        counters.http_429 += 1
        await asyncio.sleep(_retry_after(response, attempt, scale))
        attempt += 1


async def _create(
    client: httpx.AsyncClient,
    sem: asyncio.Semaphore,
    prompt: str,
    counters: ScriptCounters,
    scale: float,
) -> str:
    """POST the create; retried only while it provably never reached the server."""
    attempt = 0
    while True:
        try:
            response = await _send(
                client, sem, "POST", counters, scale, json={"model": "veo2", "prompt": prompt}
            )
        except _NOT_SENT:
            await asyncio.sleep(min(MAX_BACKOFF_S, 2.0**attempt) * scale)
            attempt += 1
            continue
        response.raise_for_status()
        return str(response.json()["id"])


async def _one(
    client: httpx.AsyncClient,
    sem: asyncio.Semaphore,
    job: JobRecord,
    prompt: str | None,
    counters: ScriptCounters,
    scale: float,
) -> None:
    if job.generation_id is None:
        assert prompt is not None
        try:
            job.generation_id = await _create(client, sem, prompt, counters, scale)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            # Sent, then failed: the job may or may not exist (and be paid). Never re-sent.
            counters.uncertain_creates += 1
            job.error = f"uncertain create: {type(exc).__name__}"
            return
    params = {"generation_id": job.generation_id}
    await asyncio.sleep(FIRST_POLL_S * scale)
    while True:
        try:
            response = await _send(client, sem, "GET", counters, scale, params=params)
            response.raise_for_status()
            data = response.json()
            status = data.get("status")
        except (httpx.HTTPError, ValueError, AttributeError):
            counters.poll_failures += 1
            status = None
        job.polls += 1
        if status == "completed":
            job.noticed_at = time.time()
            job.ok = bool((data.get("video") or {}).get("url"))
            if not job.ok:
                job.error = "completed without a video"
            return
        if status == "error":
            job.noticed_at = time.time()
            job.error = "generation error"
            return
        await asyncio.sleep(POLL_EVERY_S * scale)


async def run_script(spec: Spec, jobs: list[JobRecord], counters: ScriptCounters) -> bool:
    """Run the script over ``spec.prompts`` (or ``spec.ids``). Returns True on deadline."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    # Generous wall-clock timeouts: the semaphore keeps the pool from ever being waited on.
    timeout = httpx.Timeout(30.0)
    from benchmarks.competitors import API_KEY

    headers = {"Authorization": f"Bearer {API_KEY}"}
    prompts: list[str | None] = list(spec.prompts) if spec.prompts else [None] * len(jobs)
    sem = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=spec.base_url, headers=headers, limits=limits, timeout=timeout
    ) as client:
        tasks = [
            asyncio.ensure_future(_one(client, sem, job, prompt, counters, spec.scale))
            for job, prompt in zip(jobs, prompts, strict=True)
        ]
        done, pending = await asyncio.wait(tasks, timeout=spec.deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        return bool(pending)
