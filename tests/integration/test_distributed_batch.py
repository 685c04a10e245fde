"""Issue 15's batch-level faults, for real: worker processes running ``client.batch(prompts,
store=URL)`` (``_batch_worker.py``) against an emulator server (uvicorn on loopback) and a
real ``redis-server`` (AOF on, ``appendfsync always``) started by the test: a worker SIGKILLed
mid-batch, Redis SIGKILLed and restarted mid-batch, Redis unreachable at start, workers whose
clocks are ten minutes off with two batches on one store. Two in-process tests (SQLite,
asyncio and trio) add a worker whose heartbeat stalls past its lease.

The emulator's ledger is the truth: how many generations were created, for which prompts,
and when. Around it, every test checks the same accounting (:func:`check_accounting`): the
store holds exactly the batch's inputs, each ended completed or uncertain, each was reported
by at most one worker, no prompt was generated twice, every generation belongs to a job whose
intent was recorded (by the store's clock) before the create reached the server, and a job
left uncertain was never sent again.

Workers are forked from one process that imported the library once (:class:`Zygote`), which
saves seconds of interpreter start per worker on a loaded machine; each is still a process
of its own (own event loop, own connections, killed with SIGKILL by its pid). Redis runs on
asyncio only (``redis.asyncio``), so the tests that use it do too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from veo_async import AsyncVeoClient, BatchResult, StoreOptions
from veo_async._models import coerce_request
from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.emulator._ledger import duplicate_prompts
from veo_async.stores import (
    JobState,
    SQLiteStore,
    StoredJob,
    WorkItem,
    input_keys,
    open_store,
)
from veo_async.testing import emulated

from .._redis import RedisServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])

WORKER = str(Path(__file__).with_name("_batch_worker.py"))
SCALE = 0.005  # a generation takes about 0.2-0.6 s of wall time
SKEW = 600.0  # ten minutes


@dataclass(frozen=True)
class Reported:
    """One ``result`` line of a worker."""

    worker: str
    index: int
    key: str
    gid: str | None
    outcome: str


class Zygote:
    """``_batch_worker.py --zygote``: a process that imported everything once and forks the
    workers (see the script's docstring); each worker is still a process of its own."""

    def __init__(self, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMLAPI_", "VEO_"))}
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == b"zygote ready\n", log.read_text(errors="replace")

    def fork(self, spec: Mapping[str, object]) -> None:
        """Ask for one worker."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        """End the zygote (its workers were ended by their tests)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """The module's worker forker."""
    forker = Zygote(tmp_path_factory.mktemp("zygote") / "zygote.log")
    yield forker
    forker.close()


@dataclass
class Worker:
    """A ``_batch_worker.py`` process and every line it printed."""

    name: str
    pid: int
    stream: SocketStream
    out: BufferedByteReceiveStream
    err_path: Path
    lines: list[list[str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # anyio.current_time() of each line
    ended: bool = False  # its output ended: the process is gone
    killed: bool = False
    gone: anyio.Event = field(default_factory=anyio.Event)  # set when its output ends

    async def line(self) -> list[str] | None:
        """The next line (split), or ``None`` at the end of the output."""
        try:
            raw = await self.out.receive_until(b"\n", 1 << 20)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            self.ended = True
            self.gone.set()
            return None
        words = raw.decode().split()
        self.lines.append(words)
        self.times.append(anyio.current_time())
        return words

    async def wait_loaded(self) -> None:
        """Wait for the ``loaded`` line (at the start gate)."""
        words = await self.line()
        assert words == ["loaded"], (words, self.stderr())

    async def go(self) -> None:
        """Open the start gate."""
        await self.stream.send(b"go\n")

    async def run(
        self,
        *,
        kill_after_results: int | None = None,
        on_line: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Read every line until the process ends (``on_line`` sees each); with
        ``kill_after_results``, SIGKILL it at the first ``intent`` line after it printed that
        many results (a create in flight)."""
        while (words := await self.line()) is not None:
            if on_line is not None:
                on_line(words)
            if (
                kill_after_results is not None
                and words[0] == "intent"
                and len(self.results) >= kill_after_results
            ):
                await self.kill()

    async def kill(self) -> None:
        """SIGKILL the process by its pid (whoever reads its output sees the end)."""
        if self.ended or self.killed:
            return
        self.killed = True
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill the process if it still runs; close the socket."""
        await self.kill()
        await self.stream.aclose()

    def words(self, kind: str) -> list[list[str]]:
        """The lines that start with ``kind``, without it."""
        return [w[1:] for w in self.lines if w and w[0] == kind]

    @property
    def returncode(self) -> int | None:
        """Its exit code (``-SIGKILL`` when killed), ``None`` while it runs."""
        if self.killed:
            return -signal.SIGKILL
        exits = self.words("exit")
        return int(exits[-1][0]) if exits else None

    @property
    def results(self) -> list[Reported]:
        """Every ``result`` line, parsed."""
        return [
            Reported(self.name, int(i), key, None if gid == "-" else gid, outcome)
            for i, key, gid, outcome in self.words("result")
        ]

    @property
    def intents(self) -> set[str]:
        """Keys whose intent this worker won."""
        return {w[0] for w in self.words("intent")}

    @property
    def created(self) -> dict[str, str]:
        """Key -> generation id, for the creates this worker saw return (and recorded)."""
        return {words[0]: words[1] for words in self.words("created")}

    @property
    def batch_id(self) -> str:
        """The batch id this worker printed once the store was open."""
        (ready,) = self.words("ready")
        return ready[0]

    @property
    def ended_cleanly(self) -> bool:
        """Exit code 0 after a ``done`` line."""
        return self.returncode == 0 and bool(self.words("done"))

    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""


@dataclass(frozen=True)
class Launcher:
    """Starts worker processes on one emulator server and one store URL."""

    zygote: Zygote
    tmp_path: Path
    base: str
    store: str

    async def start(
        self,
        name: str,
        tag: str,
        n: int,
        options: Mapping[str, object] | None = None,
        *,
        skew: float = 0.0,
    ) -> Worker:
        """Start worker ``name`` on the prompts ``tag`` 0..n-1 (it waits at its start gate);
        ``options`` are the script's other flags (``max_leased=4`` is ``--max-leased 4``);
        ``skew`` shifts its wall clock by that many seconds."""
        args: dict[str, object] = {"base": self.base, "store": self.store, "worker": name}
        args |= {"tag": tag, "n": n, "time_scale": SCALE, **(options or {})}
        argv: list[str] = []
        for option, value in args.items():
            argv += ["--" + option.replace("_", "-"), str(value)]
        err_path = self.tmp_path / f"{name}.stderr"
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            (only,) = listener.listeners
            assert isinstance(only, SocketListener)
            port = only.extra(SocketAttribute.local_port)
            spec = {"argv": argv, "port": port, "stderr": str(err_path), "skew": skew}
            self.zygote.fork(spec)
            with anyio.fail_after(30):
                stream = await only.accept()
        out = BufferedByteReceiveStream(stream)
        hello = (await out.receive_until(b"\n", 1024)).decode().split()
        assert hello[0] == "hello", hello
        return Worker(name, int(hello[1]), stream, out, err_path)


async def start_all(workers: list[Worker]) -> None:
    """Wait until every worker is at its start gate, then open all the gates at once."""
    for worker in workers:
        await worker.wait_loaded()
    for worker in workers:
        await worker.go()


async def stored_jobs(url: str, batch_id: str) -> list[StoredJob]:
    """Every job of ``batch_id`` in the store at ``url``."""
    store = await open_store(url, batch_id=batch_id)
    try:
        return await store.jobs()
    finally:
        await store.aclose()


def prompts_of(tag: str, n: int) -> list[str]:
    """The prompts ``_batch_worker.py`` makes for ``tag`` (index = position)."""
    return [f"{tag} scene {i}" for i in range(n)]


def check_accounting(
    prompts: list[str],
    workers: list[Worker],
    jobs: list[StoredJob],
    generations: list[dict[str, Any]],
) -> dict[str, StoredJob]:
    """The invariants every scenario must keep (see the module docstring); returns the jobs
    by prompt.

    - the store holds exactly ``prompts``, each completed or uncertain, each intent taken
      once (``attempts == 1``) and announced by at most one worker (none only when its owner
      was SIGKILLed before it could print);
    - no input was reported twice across ``workers``; each report agrees with the store;
      every uncertain job was reported; an input nobody reported is completed (its worker
      died between recording the outcome and printing it);
    - the ledger: no prompt twice, only these prompts; a completed job's id is the ledger's;
      an uncertain job made at most one generation; every generation's job had its intent
      stamped by the store before the create reached the server.
    """
    by_prompt = {str((job.request or {})["prompt"]): job for job in jobs}
    assert sorted(by_prompt) == sorted(prompts), "the store holds exactly the batch's inputs"
    assert len(jobs) == len(prompts)
    index_of = {prompt: i for i, prompt in enumerate(prompts)}
    by_key = {job.key: job for job in jobs}
    states = Counter(job.state for job in jobs)
    assert set(states) <= {JobState.COMPLETED, JobState.UNCERTAIN}, states
    assert all(job.attempts == 1 for job in jobs), [(j.key, j.attempts) for j in jobs]

    announced = Counter(key for w in workers for key in w.intents)
    assert max(announced.values()) == 1, "an intent was won twice"
    killed = {w.name for w in workers if w.killed}
    for job in jobs:
        # a worker killed between winning an intent and printing it is the only exception
        assert job.key in announced or job.owner in killed, f"{job.key}: no worker won it"
    for worker in workers:
        assert all(by_key[key].owner == worker.name for key in worker.intents)

    reported = [r for w in workers for r in w.results]
    assert len({r.index for r in reported}) == len(reported), "an input was reported twice"
    for r in reported:
        job = by_key[r.key]
        assert index_of[str((job.request or {})["prompt"])] == r.index
        if r.outcome == "ok":
            assert job.state is JobState.COMPLETED and job.generation_id == r.gid, (r, job)
        else:
            assert r.outcome == "uncertain" and job.state is JobState.UNCERTAIN, (r, job)
    seen = {r.key for r in reported}
    for job in jobs:
        if job.key not in seen:
            assert job.state is JobState.COMPLETED, f"{job.key} ended {job.state} unreported"
            assert killed, f"{job.key} was never reported, and no worker was killed"

    assert duplicate_prompts(generations) == {}, "a prompt was generated twice"
    ledger = {str(g["prompt"]): g for g in generations}
    assert set(ledger) <= set(prompts), "a generation for an input of no batch here"
    for prompt, job in by_prompt.items():
        generation = ledger.get(prompt)
        if job.state is JobState.COMPLETED:
            assert generation is not None and generation["id"] == job.generation_id
        if generation is not None:
            # the create was sent only after the intent was durably in the store
            assert job.intent_at is not None
            assert job.intent_at <= float(generation["created_at"]) + 0.001, (job, generation)
    return by_prompt


# --------------------------------------------------------------------------- 1. SIGKILL


@pytest.mark.parametrize(
    ("anyio_backend", "kind", "backend"),
    [("asyncio", "redis", "asyncio"), ("asyncio", "sqlite", "trio")],
    ids=["redis-asyncio-workers", "sqlite-trio-workers"],
)
async def test_a_worker_killed_mid_batch_leaves_its_jobs_to_the_others(
    kind: str, backend: str, zygote: Zygote, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Three workers share a 24-input batch (on Redis; or on one SQLite file, the workers on
    trio); one is SIGKILLed with a create in flight after it reported a result (results that
    arrive together are recorded and their leases ended at once, so the worker may lease and
    announce its next creates before it prints a second result). The two
    others take over its leases after ``lease_seconds``: the jobs it had submitted are
    finished under the ids it recorded, the one whose create was in flight is reported
    uncertain (never re-sent) or tracked by its recorded id; the ledger has one generation per
    input minus the uncertain ones that never reached it."""
    n = 24
    tag = "kill-" + uuid.uuid4().hex[:8]
    prompts = prompts_of(tag, n)
    batch_id = "kill-" + uuid.uuid4().hex[:8]
    options = {"batch_id": batch_id, "lease": 1.0, "max_leased": 4, "concurrency": 4}
    options["backend"] = backend
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        url = server.url
    else:
        url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    with EmulatorServer(EmulatorConfig(time_scale=SCALE)) as emulator:
        launch = Launcher(zygote, tmp_path, emulator.base_url, url)
        workers = [await launch.start(name, tag, n, options) for name in "abc"]
        doomed, *rescuers = workers
        try:
            with anyio.fail_after(60):
                await start_all(workers)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(partial(doomed.run, kill_after_results=1))
                    for worker in rescuers:
                        tg.start_soon(worker.run)
        finally:
            for worker in workers:
                await worker.close()
        generations = emulator.stats()["generations"]

    assert doomed.killed and not doomed.words("done") and not doomed.words("exit")
    for worker in rescuers:
        assert worker.ended_cleanly, worker.stderr()
    jobs = await stored_jobs(url, batch_id)
    by_prompt = check_accounting(prompts, workers, jobs, generations)
    by_key = {job.key: job for job in jobs}

    # The doomed worker's unfinished jobs were taken over: each one it won the intent for
    # (announced or not: the kill may land between the two) and did not report is reported
    # by a rescuer, the one whose create was in flight at the kill among them.
    owned = {job.key for job in jobs if job.owner == doomed.name}
    assert doomed.intents <= owned
    orphans = owned - {r.key for r in doomed.results}
    assert orphans, "the kill came with a create in flight"
    rescued = {r.key: r for w in rescuers for r in w.results}
    for key in orphans - set(rescued):
        # unreported only if the doomed worker recorded the outcome and died before printing
        assert by_key[key].state is JobState.COMPLETED
    for key, gid in doomed.created.items():
        # an id recorded before the kill is tracked, not submitted again
        assert by_key[key].generation_id == gid
    uncertain = {p for p, job in by_prompt.items() if job.state is JobState.UNCERTAIN}
    for prompt in uncertain:
        job = by_prompt[prompt]
        assert job.key in orphans and job.key not in doomed.created
        assert rescued[job.key].outcome == "uncertain"
    assert len(uncertain) <= 4  # at most the doomed worker's leases
    reached = {str(g["prompt"]) for g in generations}
    assert len(generations) == n - len(uncertain - reached)


# --------------------------------------------------------------------------- 2. Redis restart


@ASYNCIO_ONLY
async def test_redis_restarted_mid_batch_loses_no_intent_and_the_batch_goes_on(
    redis: RedisServer, zygote: Zygote, tmp_path: Path
) -> None:
    """Two workers run a 20-input batch; after four results the redis-server is SIGKILLed,
    one worker is SIGKILLed while Redis is down (its in-flight creates can no longer be
    recorded), and Redis restarts 1 s later on the same port from its AOF. The other worker
    rides out the outage, takes over the dead one's jobs and finishes (if it gave up instead,
    a rerun resumes). Every generation in the ledger belongs to a job whose intent the store
    stamped before the create reached the server and kept across the restart; a create whose
    id was lost is reported uncertain, never sent again; no prompt was generated twice."""
    n = 20
    tag = "restart-" + uuid.uuid4().hex[:8]
    prompts = prompts_of(tag, n)
    batch_id = "restart-" + uuid.uuid4().hex[:8]
    options = {"batch_id": batch_id, "lease": 1.0, "max_leased": 4, "concurrency": 4}
    restarted_at = 0.0
    with EmulatorServer(EmulatorConfig(time_scale=SCALE)) as emulator:
        launch = Launcher(zygote, tmp_path, emulator.base_url, redis.url)
        workers = [await launch.start(name, tag, n, options) for name in "ab"]
        survivor, doomed = workers
        four_results = anyio.Event()

        def tally(words: list[str]) -> None:
            if sum(len(w.results) for w in workers) >= 4:
                four_results.set()

        async def restart_redis_midway() -> None:
            nonlocal restarted_at
            await four_results.wait()
            await anyio.to_thread.run_sync(redis.kill)
            assert not redis.ping()
            await doomed.kill()
            await doomed.gone.wait()
            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(redis.start)
            restarted_at = time.time()

        try:
            with anyio.fail_after(60):
                await start_all(workers)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(restart_redis_midway)
                    for worker in workers:
                        tg.start_soon(partial(worker.run, on_line=tally))
                if not survivor.ended_cleanly:
                    # it gave up during the outage: a rerun resumes the batch
                    rerun = await launch.start("rerun", tag, n, options)
                    workers.append(rerun)
                    await start_all([rerun])
                    await rerun.run()
                    assert rerun.ended_cleanly, rerun.stderr()
        finally:
            for worker in workers:
                await worker.close()
        generations = emulator.stats()["generations"]

    assert restarted_at > 0
    assert doomed.killed and not doomed.words("done") and not doomed.words("exit")
    # the survivor carried on to the end, or stopped with a clear store error
    assert survivor.ended_cleanly or (
        survivor.returncode == 2 and survivor.words("error")[0][0] == "StoreUnavailableError"
    ), survivor.stderr()
    jobs = await stored_jobs(redis.url, batch_id)
    by_prompt = check_accounting(prompts, workers, jobs, generations)
    # every id a worker saw recorded survived the restart, and was tracked, not resubmitted
    for worker in workers:
        for key, gid in worker.created.items():
            assert next(j for j in jobs if j.key == key).generation_id == gid
    assert any((job.intent_at or 0) > restarted_at for job in jobs), "nothing after the restart"
    uncertain = {p for p, job in by_prompt.items() if job.state is JobState.UNCERTAIN}
    for prompt in uncertain:
        # only a create of the worker killed during the outage can have lost its id
        assert by_prompt[prompt].owner == doomed.name
    reached = {str(g["prompt"]) for g in generations}
    assert len(generations) == n - len(uncertain - reached)
    assert {j.owner for j in jobs} >= {survivor.name, doomed.name}


# --------------------------------------------------------------------------- 3. unreachable


@ASYNCIO_ONLY
async def test_an_unreachable_redis_at_start_is_a_clear_error_and_nothing_is_sent(
    zygote: Zygote, tmp_path: Path
) -> None:
    """Nothing listens at the store URL: the worker stops within seconds with a
    StoreUnavailableError naming the URL without its password (printed nowhere), and the
    emulator saw no request at all."""
    port = free_port()
    secret = "pw-" + uuid.uuid4().hex
    url = f"redis://worker:{secret}@127.0.0.1:{port}/3"
    with EmulatorServer(EmulatorConfig(time_scale=SCALE)) as emulator:
        launch = Launcher(zygote, tmp_path, emulator.base_url, url)
        worker = await launch.start("solo", "unreachable", 6)
        try:
            with anyio.fail_after(30):
                await start_all([worker])
                opened = anyio.current_time()
                await worker.run()
        finally:
            await worker.close()
        stats = emulator.stats()

    assert worker.returncode == 2, worker.stderr()
    (error,) = worker.words("error")
    assert error[0] == "StoreUnavailableError"
    assert worker.times[-1] - opened < 10  # fails fast, no endless reconnecting
    message = " ".join(error[1:])
    assert f"redis://worker@127.0.0.1:{port}/3" in message
    assert "nothing was submitted" in message
    printed = " ".join(" ".join(w) for w in worker.lines) + worker.stderr()
    assert secret not in printed
    assert not worker.words("ready") and not worker.intents
    assert stats["create_requests"] == 0
    assert stats["generations_created"] == 0
    assert stats["poll_requests"] == 0


# --------------------------------------------------------------------------- 4. clock, batches


@ASYNCIO_ONLY
async def test_skewed_clocks_and_two_batches_on_one_store_do_not_cross_talk(
    redis: RedisServer, zygote: Zygote, tmp_path: Path
) -> None:
    """Two batches with different inputs run at once on one Redis: batch X by two worker
    processes whose clocks are ten minutes fast and ten minutes slow, batch Y by this process
    (on time), started while X runs. Each batch (its id derived from its inputs) holds only its
    inputs and is worked only by its own workers; each prompt is generated once; the store's
    stamps are the server's time; and no lease was taken over although the two X workers'
    clocks disagree by twenty minutes, far more than ``lease_seconds``."""
    n = 12
    tag_x, tag_y = ("skew-x-" + uuid.uuid4().hex[:8]), ("skew-y-" + uuid.uuid4().hex[:8])
    prompts_x, prompts_y = prompts_of(tag_x, n), prompts_of(tag_y, n)
    options: dict[str, object] = {"lease": 3.0, "max_leased": 3, "concurrency": 3}
    here = StoreOptions(worker="y-here", lease_seconds=3.0, max_leased=3, idle_poll=0.05)
    y_entered, x_progress = anyio.Event(), anyio.Event()
    y_results: list[BatchResult] = []
    y_batch_id: str | None = None
    with EmulatorServer(EmulatorConfig(time_scale=SCALE)) as emulator:
        launch = Launcher(zygote, tmp_path, emulator.base_url, redis.url)
        x_fast = await launch.start("x-fast", tag_x, n, options, skew=SKEW)
        x_slow = await launch.start("x-slow", tag_x, n, options, skew=-SKEW)
        workers = [x_fast, x_slow]

        def watch(words: list[str]) -> None:
            if words[0] == "result":
                x_progress.set()

        async def batch_y() -> None:
            # Y stays open (one result consumed, the rest waiting) until X has results: the
            # two batches are live on the store at the same time.
            nonlocal y_batch_id
            client = AsyncVeoClient("emulator-key", base_url=emulator.base_url, time_scale=SCALE)
            async with (
                client,
                client.batch(
                    prompts_y, store=redis.url, store_options=here, max_concurrency=3
                ) as batch,
            ):
                y_batch_id = batch.batch_id
                y_entered.set()
                async for result in batch:
                    y_results.append(result)
                    if len(y_results) == 1:
                        await x_progress.wait()

        try:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(batch_y)
                    await y_entered.wait()
                    await start_all(workers)
                    for worker in workers:
                        tg.start_soon(partial(worker.run, on_line=watch))
        finally:
            for worker in workers:
                await worker.close()
        generations = emulator.stats()["generations"]

    for worker in workers:
        assert worker.ended_cleanly, worker.stderr()
        assert "taken over" not in worker.stderr()
    assert x_fast.batch_id == x_slow.batch_id != y_batch_id
    assert sorted(r.index for r in y_results) == list(range(n))
    assert all(r.ok for r in y_results)

    assert sorted(str(g["prompt"]) for g in generations) == sorted(prompts_x + prompts_y)
    assert duplicate_prompts(generations) == {}
    created_at = {str(g["prompt"]): float(g["created_at"]) for g in generations}
    jobs_x = await stored_jobs(redis.url, x_fast.batch_id)
    assert y_batch_id is not None
    jobs_y = await stored_jobs(redis.url, y_batch_id)
    of_x = [g for g in generations if str(g["prompt"]).startswith(tag_x + " ")]
    by_prompt = check_accounting(prompts_x, workers, jobs_x, of_x)
    assert sorted(str((j.request or {})["prompt"]) for j in jobs_y) == sorted(prompts_y)
    assert {job.owner for job in jobs_x} <= {"x-fast", "x-slow"}
    assert {job.owner for job in jobs_y} == {"y-here"}
    for worker in workers:
        assert worker.results, f"{worker.name} did no work"
        assert all(r.outcome == "ok" for r in worker.results)
    for job in jobs_x + jobs_y:
        assert job.state is JobState.COMPLETED
        prompt = str((job.request or {})["prompt"])
        # stamped by Redis's clock: within seconds of the emulator's, never ten minutes off
        assert job.intent_at is not None and job.finished_at is not None
        assert abs(job.intent_at - created_at[prompt]) < 5
        assert abs(job.finished_at - created_at[prompt]) < 30
    assert len(by_prompt) == n


# --------------------------------------------------------------------------- 5. late heartbeats


async def test_a_worker_whose_heartbeat_stalls_does_not_run_its_own_jobs_twice(
    tmp_path: Path,
) -> None:
    """A worker's heartbeat stalls past ``lease_seconds`` (a blocked loop, a store outage)
    while a live peer holds one job, so the worker keeps looking for abandoned leases and
    finds its own: it keeps them without handing them to its engine again. Each input is
    reported once and generated once (the peer's job too, taken over when the peer dies)."""
    store = await SQLiteStore.open(tmp_path / "jobs.sqlite3", batch_id="stall")
    renew = store.heartbeat

    async def stalled_heartbeat(worker: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        return []  # never renews: the leases go idle

    store.heartbeat = stalled_heartbeat  # type: ignore[method-assign]
    prompts = prompts_of("stall", 4)
    keys = input_keys(coerce_request(p).to_body() for p in prompts)
    await store.add_inputs(zip(keys, (coerce_request(p).to_body() for p in prompts), strict=True))
    peer_items = await store.take_work("peer", count=1)

    async def peer() -> None:
        for _ in range(8):  # alive for a while, then gone
            await renew("peer", peer_items)
            await anyio.sleep(0.1)

    options = StoreOptions(worker="w", lease_seconds=0.3, idle_poll=0.05)
    try:
        async with emulated(time_scale=0.01) as service:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(peer)
                    async with service.client.batch(
                        prompts, store=store, store_options=options
                    ) as batch:
                        results = [result async for result in batch]
            stats = service.stats()
        jobs = await store.jobs()
    finally:
        await store.aclose()
    assert sorted(r.index for r in results) == [0, 1, 2, 3]  # each reported once
    assert all(r.ok for r in results)
    assert stats["generations_created"] == 4 and duplicate_prompts(stats["generations"]) == {}
    assert stats["create_requests"] == 4
    assert {job.state for job in jobs} == {JobState.COMPLETED}


async def test_a_lease_acked_during_a_heartbeat_is_not_reported_as_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that ends (its lease acked) while a heartbeat carrying it is on its way comes
    back from the store as not renewed: that is this worker's own ack, not a takeover, and is
    not logged as one."""
    store = await SQLiteStore.open(tmp_path / "jobs.sqlite3", batch_id="race")
    renew, ack = store.heartbeat, store.ack
    acked = anyio.Event()
    beats_after_ack = 0

    async def counting_ack(worker: str, items: Sequence[WorkItem]) -> None:
        await ack(worker, items)
        acked.set()

    async def slow_heartbeat(worker: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        nonlocal beats_after_ack
        await acked.wait()  # the beat is "on its way" until a job of it ended here
        beats_after_ack += 1
        return await renew(worker, items)

    store.ack = counting_ack  # type: ignore[method-assign]
    store.heartbeat = slow_heartbeat  # type: ignore[method-assign]
    options = StoreOptions(worker="w", lease_seconds=0.15, idle_poll=0.05)
    caplog.set_level(logging.WARNING, logger="veo_async.batch")
    try:
        async with emulated(time_scale=0.01) as service:
            with anyio.fail_after(30):
                async with service.client.batch(
                    prompts_of("race", 3), store=store, store_options=options
                ) as batch:
                    results = [result async for result in batch]
            created = service.stats()["generations_created"]
    finally:
        await store.aclose()
    assert beats_after_ack >= 1
    assert sorted(r.index for r in results) == [0, 1, 2] and all(r.ok for r in results)
    assert created == 3
    assert not [r for r in caplog.records if "taken over" in r.getMessage()]
