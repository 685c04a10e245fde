"""The FastAPI example on Redis, for real: two uvicorn server processes share one
``redis-server`` (job store and rate budget) and one emulator server. A job submitted through
one worker is awaited through the other, and SIGKILLing the first mid-wait loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from veo_async import AsyncVeoClient
from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.stores import Event, JobState, RedisStore

from .._redis import RedisServer, free_port
from .test_fastapi_app import AppServer, example

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TIME_SCALE = 0.1  # a job waits 2 s in the queue, then takes about 0.5-5 s more
SECRET_KEY = "sk-fastapi-redis-SECRET-0123456789"


class Worker:
    """``uvicorn examples.fastapi_app.app:app`` in a process of its own, on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_app.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ``/healthz`` answers (or the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("worker did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lifespan exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (graceful), then close the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_job_submitted_through_one_worker_is_awaited_through_another(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Submit 2 jobs through worker A: each is in the store (submitted, with its id) before the
    reply. Wait through A and B; SIGKILL A mid-wait: B's wait returns the completed video, B
    also finishes the second job alone, and the emulator created exactly one generation per
    job. The key appears in no reply."""
    batch = "fastapi-" + uuid.uuid4().hex[:8]
    config = EmulatorConfig(time_scale=TIME_SCALE, queue_delay=20.0)
    with EmulatorServer(config) as emulator:
        env = {
            **os.environ,
            "AIMLAPI_BASE_URL": emulator.base_url,
            "AIMLAPI_KEY": SECRET_KEY,
            "VEO_ASYNC_TIME_SCALE": str(TIME_SCALE),
            "VEO_STORE_URL": redis.url,
            "VEO_STORE_BATCH": batch,
            "VEO_SHARED_RATE": "50",
        }
        a = Worker(env, tmp_path / "a.log")
        b = Worker(env, tmp_path / "b.log")
        store = await RedisStore.open(redis.url, batch_id=batch)
        try:
            a.wait_ready()
            b.wait_ready()
            with anyio.fail_after(60):
                async with httpx.AsyncClient(timeout=60) as http:
                    await _scenario(http, a, b, store, emulator)
        finally:
            await store.aclose()
            a.stop()
            b.stop()
    logs = (tmp_path / "a.log").read_bytes() + (tmp_path / "b.log").read_bytes()
    assert SECRET_KEY.encode() not in logs


async def _scenario(
    http: httpx.AsyncClient, a: Worker, b: Worker, store: RedisStore, emulator: EmulatorServer
) -> None:
    jobs: list[dict[str, Any]] = []
    for prompt in ("a lighthouse at dusk", "a fox in fresh snow"):
        reply = await http.post(a.base_url + "/videos", json={"prompt": prompt, "duration": 5})
        assert reply.status_code == 202, reply.text
        body = reply.json()
        assert SECRET_KEY not in reply.text
        stored = await store.get(body["job"])  # recorded before the reply
        assert stored is not None and stored.state is JobState.SUBMITTED
        assert stored.generation_id == body["id"] and stored.owner is not None
        assert body["links"]["wait"] == f"/jobs/{body['job']}/wait"
        jobs.append(body)
    first, second = jobs
    answers: dict[str, httpx.Response | BaseException] = {}

    async def wait_through(label: str, worker: Worker, job: str) -> None:
        try:
            answers[label] = await http.get(worker.base_url + f"/jobs/{job}/wait")
        except httpx.HTTPError as exc:  # the worker was killed under the request
            answers[label] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_through, "a", a, first["job"])
        tg.start_soon(wait_through, "b", b, first["job"])
        await anyio.sleep(0.3)
        midway = await store.get(first["job"])
        assert midway is not None and midway.state is JobState.SUBMITTED  # not finished yet
        a.kill()  # mid-wait
    assert isinstance(answers["a"], httpx.HTTPError)  # A died under its wait
    reply_b = answers["b"]
    assert isinstance(reply_b, httpx.Response) and reply_b.status_code == 200, reply_b
    done = reply_b.json()
    assert done["state"] == "completed" and done["id"] == first["id"] and done["video_url"]
    # A is gone: B alone answers for the job A submitted and nobody has awaited yet
    reply = await http.get(b.base_url + f"/jobs/{second['job']}/wait")
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "completed" and reply.json()["id"] == second["id"]
    status = (await http.get(b.base_url + f"/jobs/{first['job']}")).json()
    assert status["state"] == "completed" and status["video_url"] == done["video_url"]
    # a job whose create may or may not have happened (uncertain) is reported, never resent
    ghost = "job-" + uuid.uuid4().hex
    await store.add_inputs([(ghost, {"model": "veo2", "prompt": "lost in flight"})])
    assert await store.claim_intent(ghost, "a-worker-that-died")
    assert await store.transition(ghost, Event.ABANDONED)
    reply = await http.get(b.base_url + f"/jobs/{ghost}/wait")
    assert reply.status_code == 409 and reply.json()["error"]["job"]["state"] == "uncertain"
    assert (await http.get(b.base_url + "/jobs/job-" + "0" * 32)).status_code == 404
    ledger = emulator.stats(include_generations=False)
    assert ledger["generations_created"] == 2 and ledger["create_requests"] == 2
    assert ledger["duplicate_prompts"] == {}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_without_a_store_the_service_is_single_process_as_before() -> None:
    """Without VEO_STORE_URL nothing is recorded: POST /videos answers without a job key, and
    the /jobs routes say there is no store."""
    with EmulatorServer(EmulatorConfig(time_scale=0.002)) as emulator:

        def factory() -> AsyncVeoClient:
            return AsyncVeoClient(SECRET_KEY, base_url=emulator.base_url, time_scale=0.002)

        app = example.create_app(factory, settings=example.Settings())
        with AppServer(app) as server, anyio.fail_after(30):
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                reply = await http.post("/videos", json={"prompt": "a koi pond"})
                assert reply.status_code == 202 and "job" not in reply.json()
                assert "wait" not in reply.json()["links"]
                missing = await http.get("/jobs/job-" + "0" * 32 + "/wait")
                assert missing.status_code == 404
                assert missing.json()["error"]["type"] == "no_store"
        assert emulator.stats(include_generations=False)["generations_created"] == 1
