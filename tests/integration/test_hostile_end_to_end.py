"""Two issue-13 promises checked end to end, where they meet: a batch in a 429 storm with
``Retry-After: 0`` (the floor holds for the whole pipeline, not just one ``submit``), and the
CLI facing a server that echoes the key (nothing it prints or writes holds the key)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from veo_async import AsyncVeoClient, PollPolicy, RetryConfig

from ..hostile import HostileServer, Recorded, Reply, generation

pytestmark = pytest.mark.slow

KEY = "sk-echo-SECRET-5f4dcc3b5aa765d61d8327deb882cf99"


class StormServer:
    """A job server that answers every request 429 with ``Retry-After: 0`` for its first
    ``storm`` seconds, then creates jobs (completed at the first poll)."""

    def __init__(self, storm: float) -> None:
        self.storm = storm
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.created: list[str] = []
        self.refused = 0

    def __call__(self, req: Recorded) -> Reply:
        with self.lock:
            if time.monotonic() - self.t0 < self.storm:
                self.refused += 1
                return Reply.json(
                    {"message": "slow down", "statusCode": 429},
                    status=429,
                    headers=[("Retry-After", "0")],
                )
            if req.method == "POST":
                gid = f"job-{len(self.created)}"
                self.created.append(req.json()["prompt"])
                return Reply.json(generation(gid, "queued"))
        gid = req.query.get("generation_id", "")
        return Reply.json(generation(gid, "completed", f"http://127.0.0.1:1/{gid}.mp4"))


@pytest.mark.anyio
async def test_batch_in_a_retry_after_zero_storm_neither_spins_nor_fails() -> None:
    """A 1.5 s storm of ``429 Retry-After: 0`` on a 20-input batch: every input completes,
    each is created exactly once, and the storm draws a bounded number of requests (the
    computed backoff is the floor; before, such a storm drew hundreds per second)."""
    script = StormServer(storm=1.5)
    prompts = [f"storm prompt {i}" for i in range(20)]
    retry = RetryConfig(max_attempts=4, initial_backoff=0.05, max_backoff=0.4)
    with HostileServer(script) as server:
        script.t0 = time.monotonic()
        async with AsyncVeoClient(
            KEY,
            base_url=server.url,
            retry=retry,
            poll_policy=PollPolicy(time_scale=0.001),
            time_scale=1.0,
        ) as client:
            with anyio.fail_after(60):
                async with client.batch(prompts, max_concurrency=8) as batch:
                    results = [r async for r in batch]
    assert sorted(r.index for r in results) == list(range(20))
    assert [r.error for r in results if not r.ok] == []
    assert sorted(script.created) == sorted(prompts)  # billed once each
    # 8 request slots, each waiting at least the backoff floor (0.05 s, doubling) between
    # tries: far fewer than the hundreds per second a "retry now" loop sends in 1.5 s.
    assert script.refused < 250, script.refused


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMLAPI_")}
    env["AIMLAPI_KEY"] = KEY
    return subprocess.run(
        [sys.executable, "-m", "veo_async.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_cli_never_prints_or_stores_an_echoed_key(tmp_path: Path) -> None:
    """A server that echoes the key (and the Bearer header) in every error: the CLI's stdout,
    stderr, journal, manifest and every other file it writes hold no trace of the key."""

    def script(req: Recorded) -> Reply:
        echoed = f"bad key {KEY}; you sent {req.headers.get('authorization', '')}"
        if req.method == "POST" and "refuse" in req.body.decode():
            return Reply.json({"message": echoed, "statusCode": 400}, status=400)
        if req.method == "POST":
            return Reply.json(
                {"message": echoed, "statusCode": 500},
                status=500,
                headers=[("x-request-id", f"req-{KEY}")],
            )
        return Reply.json({"message": echoed}, status=404)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("please refuse this one\nand this one fails with a 500\n")
    out = tmp_path / "out"
    with HostileServer(script) as server:
        batch = _cli(
            "batch",
            str(prompts),
            "--out",
            str(out),
            "--base-url",
            server.url,
            "--progress-interval",
            "0.2",
            cwd=tmp_path,
        )
        status = _cli("status", "job-x", "--base-url", server.url, cwd=tmp_path)
    assert server.count("POST") >= 2  # the server really was asked (and echoed)
    for result in (batch, status):
        assert "Traceback" not in result.stderr, result.stderr
        for text in (result.stdout, result.stderr):
            assert KEY not in text and "echo-SECRET" not in text, text
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files  # the journal at least
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and b"echo-SECRET" not in data, path
