"""``veo-async batch FILE --store URL`` and ``veo-async status --store URL``: a batch shared
by several processes or machines through a job store (``redis://`` or ``sqlite://``).

Every process runs the same command with the same FILE and store and its own ``--out``. The
library's durable batch (:class:`~veo_async.DurableBatch`) hands each process jobs from the
store, so each input is submitted once across all of them; each process downloads what it
finished into its own ``--out`` and writes its own ``manifest.jsonl`` there. The worker's name
is the host name and the absolute ``--out`` folder, so a process rerun with the same ``--out``
after a crash is the same worker: it downloads the videos it had finished and not yet fetched,
and the jobs it held are taken over (by it or by a peer) once their leases expire.

With a ``redis://`` store the processes also share the API key's request budget on that same
Redis (a :class:`~veo_async.stores.SharedBudget` named :func:`~veo_async.stores.budget_name`
of the key, never the key itself): ``--rate N`` is then the key's total rate, shared by all of
them, and without ``--rate`` they share the pace a governor learns from 429s and publishes
there. A ``sqlite://`` store is one machine's: ``--rate`` stays per process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from .._inputs import ParsedInput
from .._resume import video_filename
from ..batch import BatchResult, DurableBatch, StoreOptions
from ..batch._durable import stored_generation
from ..stores import (
    Event,
    JobState,
    JobStore,
    SharedBudget,
    batch_fingerprint,
    budget_name,
    input_keys,
    open_store,
)
from ..stores._base import redact_url
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Settings,
    echo_err,
    echo_json,
    open_client,
)

if TYPE_CHECKING:
    from .._client import AsyncVeoClient
    from .._models import Generation
    from ._batch import BatchOptions

__all__ = [
    "UNBOUNDED_RATE",
    "check_store_options",
    "open_shared_budget",
    "run_status_store",
    "run_store_batch",
    "worker_name",
]

MANIFEST = "manifest.jsonl"
BATCH_FILE = "batch.json"
#: The shared budget's rate without ``--rate`` (requests/s): high enough never to bind, so the
#: processes share only the pace a governor learns from 429s and publishes (the budget runs at
#: the lower of its rate and that pace).
UNBOUNDED_RATE = 1e6


def check_store_options(options: BatchOptions) -> None:
    """Refuse, before anything is sent, the flags a shared batch does not take yet."""
    refused = [
        flag
        for flag, given in (
            ("--resubmit-uncertain", options.resubmit_uncertain),
            ("--retry-failed", options.retry_failed),
            ("--events", options.events is not None),
            ("--force", options.force),
        )
        if given
    ]
    if refused:
        raise CliError(
            f"{', '.join(refused)} cannot be combined with --store yet: a shared batch is keyed "
            "by its inputs (an edited file is a new batch, so --force is not needed), and "
            "uncertain or failed inputs are resubmitted by running them as a new batch",
            EXIT_USAGE,
        )


async def open_shared_budget(
    settings: Settings, client: AsyncVeoClient, rate: float | None, url: str
) -> SharedBudget | None:
    """With a ``redis://`` (or ``rediss://``) store, the API key's request budget on that same
    Redis, shared by every process of the batch: ``rate`` requests/s for all of them together,
    or, without a rate, only the pace their governors learn and publish. ``None`` for a
    ``sqlite://`` store (rates stay per process) and with ``--emulate`` (each process has an
    emulator, and a limit, of its own)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss") or settings.emulate:
        return None
    name = budget_name(client._secrets()[0])  # the client's key, read once (never stored)
    return await SharedBudget.open(url, name=name, rate=rate or UNBOUNDED_RATE)


def worker_name(out: Path) -> str:
    """This process's worker name: host name and the absolute ``--out`` folder."""
    return f"{socket.gethostname()}:{out.resolve()}"


@dataclass
class _Local:
    """What this process did (its manifest and its summary)."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: float = field(default_factory=time.time)
    downloaded: int = 0
    download_failed: int = 0

    def note(self, key: str, **values: Any) -> None:
        self.rows.setdefault(key, {"key": key}).update(values, run=self.run)

    @classmethod
    def load(cls, out: Path) -> _Local:
        """What earlier runs in ``out`` recorded (its manifest), so a rerun keeps it."""
        local = cls()
        try:
            lines = (out / MANIFEST).read_text().splitlines()
        except OSError:
            return local
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                local.rows[row["key"]] = row
        return local

    def this_run(self) -> list[dict[str, Any]]:
        """The rows this run touched."""
        return [r for r in self.rows.values() if r.get("run") == self.run]


def _write_manifest(out: Path, local: _Local) -> None:
    rows = sorted(local.rows.values(), key=lambda r: (r.get("index", 0), r["key"]))
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, out / MANIFEST)


def _row(result: BatchResult) -> dict[str, Any]:
    gen = result.generation
    return {
        "index": result.index,
        "prompt": result.request.prompt if result.request is not None else None,
        "generation_id": result.generation_id,
        "status": str(gen.status) if gen is not None else None,
        "ok": result.ok,
        "error": str(result.error).splitlines()[0] if result.error is not None else None,
        "error_type": type(result.error).__name__ if result.error is not None else None,
    }


async def _download(
    client: AsyncVeoClient,
    store: JobStore,
    out: Path,
    local: _Local,
    key: str,
    number: int,
    prompt: str,
    generation: Generation,
) -> None:
    name = video_filename(number, prompt, generation.id)
    try:
        video = await client.download(generation, out / name, overwrite=True)
    except Exception as exc:  # one download's trouble is that job's: the rerun fetches it
        from ._run import download_error

        text = download_error(exc, out)
        local.download_failed += 1
        local.note(key, download_error=text)
        await store.transition(key, Event.DOWNLOAD_FAILED, error=text)
        echo_err(f"input {number}: {text}")
        return
    local.downloaded += 1
    local.note(key, file=name, sha256=video.sha256, size=video.size)
    await store.transition(key, Event.DOWNLOADED, file=name, sha256=video.sha256, size=video.size)


async def _downloader(
    receive: MemoryObjectReceiveStream[tuple[str, int, str, Generation]],
    client: AsyncVeoClient,
    store: JobStore,
    out: Path,
    local: _Local,
) -> None:
    async with receive:
        async for key, number, prompt, generation in receive:
            await _download(client, store, out, local, key, number, prompt, generation)


async def _sweep(
    client: AsyncVeoClient,
    store: JobStore,
    worker: str,
    out: Path,
    local: _Local,
    positions: dict[str, int],
) -> int:
    """Download what this worker finished earlier and never fetched (a crash, a failed
    download). Returns how many were tried."""
    tried = 0
    for job in await store.jobs():
        if job.state is not JobState.COMPLETED or not job.video_url or job.owner != worker:
            continue
        prompt = str((job.request or {}).get("prompt", "video"))
        number = positions.get(job.key, job.seq - 1) + 1
        local.note(job.key, index=number - 1, prompt=prompt, generation_id=job.generation_id)
        local.rows[job.key].update(status="completed", ok=True)
        generation = stored_generation(job)
        assert generation is not None  # a completed job with a video URL has an id
        await _download(client, store, out, local, job.key, number, prompt, generation)
        tried += 1
    return tried


def _lock(out: Path) -> Any:
    """One process per ``--out`` folder (its worker name is the folder)."""
    import fcntl

    handle = open(out / ".veo-async-worker.lock", "w")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CliError(
            f"another veo-async process is using {out} as its --out folder; give each "
            "process of a shared batch its own --out"
        ) from None
    return handle


async def run_store_batch(
    settings: Settings, options: BatchOptions, inputs: list[ParsedInput], url: str
) -> int:
    """The ``batch`` command with ``--store URL`` (see the module docstring)."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        return await _run(settings, options, inputs, url, out)
    finally:
        lock.close()


async def _run(
    settings: Settings, options: BatchOptions, inputs: list[ParsedInput], url: str, out: Path
) -> int:
    requests = [item.request for item in inputs]
    keys = input_keys(r.to_body() for r in requests)
    positions = {key: i for i, key in enumerate(keys)}
    batch_id = options.batch_id or batch_fingerprint(keys)
    worker = worker_name(out)
    local = _Local.load(out)
    started = time.monotonic()
    async with open_client(settings) as client:  # a missing key fails here, before the store
        store = await open_store(url, batch_id=batch_id)
        shown = redact_url(url)
        (out / BATCH_FILE).write_text(
            json.dumps({"store": shown, "batch_id": batch_id, "worker": worker}, indent=2) + "\n"
        )
        echo_err(
            f"batch {batch_id} on {shown} as worker {worker}\n"
            f"whole batch: veo-async status --store {shown} --batch-id {batch_id}"
        )
        budget: SharedBudget | None = None
        try:
            budget = await open_shared_budget(settings, client, options.rate, url)
            if budget is not None:
                client.governor.shared_budget = budget
                echo_err(
                    f"request budget shared on {shown}: "
                    + (
                        f"{options.rate:g} requests/s for all processes together"
                        if options.rate
                        else "the pace learned from 429s (no --rate)"
                    )
                )
            await _sweep(client, store, worker, out, local, positions)
            send, receive = anyio.create_memory_object_stream[tuple[str, int, str, "Generation"]](
                options.download_concurrency * 4
            )
            async with anyio.create_task_group() as tg:
                for _ in range(options.download_concurrency):
                    tg.start_soon(_downloader, receive.clone(), client, store, out, local)
                receive.close()
                async with send:
                    batch = client.batch(
                        requests,
                        store=store,
                        store_options=StoreOptions(
                            worker=worker, lease_seconds=options.lease_seconds
                        ),
                        max_concurrency=options.concurrency,
                        # a shared budget holds the rate for every process together
                        requests_per_second=options.rate if budget is None else None,
                        job_timeout=options.job_timeout,
                        max_generations=options.max_generations,
                        credit_budget=options.credit_budget,
                        progress=True,
                    )
                    async with batch as results:
                        await _consume(results, local, send, out)
            counts = await store.counts()
        finally:
            with anyio.CancelScope(shield=True):
                _write_manifest(out, local)
                await store.aclose()
                if budget is not None:
                    client.governor.shared_budget = None
                    await budget.aclose()
    return _summary(settings, local, counts, batch_id, time.monotonic() - started)


async def _consume(
    results: DurableBatch,
    local: _Local,
    send: ObjectSendStream[tuple[str, int, str, Generation]],
    out: Path,
) -> None:
    async for result in results:
        key = str(result.key)
        local.note(key, **_row(result))
        if result.ok and result.generation is not None:
            prompt = result.request.prompt if result.request is not None else "video"
            await send.send((key, result.index + 1, prompt, result.generation))
        elif result.error is not None:
            echo_err(f"input {result.index + 1}: {str(result.error).splitlines()[0]}")
    _write_manifest(out, local)


def _summary(
    settings: Settings,
    local: _Local,
    counts: dict[JobState, int],
    batch_id: str,
    seconds: float,
) -> int:
    mine = local.this_run()
    ok = sum(1 for r in mine if r.get("ok"))
    failed = [r for r in mine if r.get("error")]
    uncertain = sum(1 for r in failed if r.get("error_type") == "CreateOutcomeUnknownError")
    whole = {state.value: n for state, n in counts.items() if n}
    unsettled = sum(counts.get(s, 0) for s in (JobState.PENDING, JobState.SUBMITTING))
    running = counts.get(JobState.SUBMITTED, 0)
    code = EXIT_OK if not failed and local.download_failed == 0 else EXIT_FAILED
    if settings.json_output:
        echo_json(
            {
                "batch_id": batch_id,
                "this_worker": {
                    "results": len(mine),
                    "completed": ok,
                    "failed": len(failed) - uncertain,
                    "uncertain": uncertain,
                    "downloaded": local.downloaded,
                    "download_failed": local.download_failed,
                },
                "whole_batch": whole,
                "seconds": round(seconds, 1),
            }
        )
    echo_err(
        f"this worker: {len(mine)} results, {ok} completed, {len(failed) - uncertain} failed, "
        f"{uncertain} uncertain, "
        f"{local.downloaded} downloaded, {local.download_failed} download failed "
        f"({seconds:.0f} s)"
    )
    echo_err("whole batch: " + ", ".join(f"{n} {s}" for s, n in whole.items()))
    if unsettled or running:
        echo_err(
            f"{unsettled + running} jobs of the batch are still with other workers or "
            "unfinished; rerun the same command to take part again"
        )
    return code


async def run_status_store(settings: Settings, url: str, batch_id: str) -> int:
    """``veo-async status --store URL --batch-id ID``: the whole batch across workers."""
    store = await open_store(url, batch_id=batch_id)
    try:
        jobs = await store.jobs()
        if not jobs:
            raise CliError(
                f"no batch {batch_id} in {redact_url(url)} (the batch id is printed by "
                "`veo-async batch ... --store` and saved in batch.json in its --out)"
            )
        counts = await store.counts()
        pending = getattr(store, "pending", None)
        leases: dict[str, int] = await pending() if pending is not None else {}
    finally:
        await store.aclose()
    whole = {state.value: n for state, n in counts.items() if n}
    problems = [
        {
            "index": j.seq - 1,
            "state": j.state.value,
            "generation_id": j.generation_id,
            "error": (j.error or "").splitlines()[0] if j.error else None,
        }
        for j in jobs
        if j.state in (JobState.FAILED, JobState.UNCERTAIN, JobState.REFUSED)
    ]
    if settings.json_output:
        echo_json(
            {
                "batch_id": batch_id,
                "jobs": len(jobs),
                "states": whole,
                "leases": leases,
                "problems": problems,
            }
        )
        return EXIT_OK
    echo_err(f"batch {batch_id}: {len(jobs)} jobs")
    for state, n in whole.items():
        echo_err(f"  {state:<11} {n}")
    if leases:
        echo_err("held by workers:")
        for name, n in sorted(leases.items()):
            echo_err(f"  {name}: {n}")
    for row in problems[:20]:
        echo_err(f"  input {row['index'] + 1}: {row['state']} {row['error'] or ''}".rstrip())
    if len(problems) > 20:
        echo_err(f"  ... and {len(problems) - 20} more")
    return EXIT_OK
