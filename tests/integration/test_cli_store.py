"""``veo-async batch FILE --store URL`` on several real processes: one emulator server (its
ledger is the truth), one real ``redis-server``, a CLI process per ``--out``.

Each input is generated once across the processes, every video lands in exactly one
``--out``, a SIGKILLed process's jobs are finished by the others and its rerun fetches what it
had left, and ``veo-async status --store`` shows the whole batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.stores import JobState, budget_name

from .._cli import no_traceback, read_manifest, run_cli
from .._redis import RedisServer, free_port

pytestmark = pytest.mark.slow

TIME_SCALE = 0.01
KEY = "sk-cli-store-SECRET-4242"
LIMIT = 20.0
"""The rate-limited emulator's limit: real requests per second per key."""


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """The emulator as a real server on loopback."""
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=3)) as running:
        yield running


@pytest.fixture
def limited_server() -> Iterator[EmulatorServer]:
    """The emulator as a real server on loopback, limited to ``LIMIT`` real requests/s per
    key (burst 5)."""
    config = EmulatorConfig(
        time_scale=TIME_SCALE, seed=4, rate_limit=LIMIT * TIME_SCALE, rate_limit_burst=5
    )
    with EmulatorServer(config) as running:
        yield running


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["AIMLAPI_KEY"] = KEY
    env.pop("VEO_API_KEY", None)
    return env


def _args(path: Path, out: Path, redis: RedisServer, server: EmulatorServer) -> list[str]:
    return [
        "batch",
        str(path),
        "--out",
        str(out),
        "--store",
        redis.url,
        "--lease",
        "1",
        "--base-url",
        server.base_url,
        "--time-scale",
        str(TIME_SCALE),
    ]


def _prompts(tmp_path: Path, n: int, tag: str) -> tuple[Path, list[str]]:
    prompts = [f"{tag} shared scene {i}" for i in range(n)]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n")
    return path, prompts


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "veo_async.cli", *args],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _downloaded(outs: list[Path]) -> dict[str, list[Path]]:
    """prompt -> the folders whose manifest has its downloaded video (the file exists)."""
    where: dict[str, list[Path]] = {}
    for out in outs:
        if not (out / "manifest.jsonl").exists():
            continue
        for row in read_manifest(out):
            if row.get("file") and (out / row["file"]).stat().st_size > 0:
                where.setdefault(row["prompt"], []).append(out)
    return where


def _status(redis: RedisServer, batch_id: str) -> dict[str, Any]:
    result = run_cli("status", "--store", redis.url, "--batch-id", batch_id, "--json", env=_env())
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_three_processes_share_one_batch(
    tmp_path: Path, redis: RedisServer, server: EmulatorServer
) -> None:
    """Three CLI processes, one FILE, one Redis: each prompt generated once, each video in
    exactly one --out, the whole batch downloaded; the key appears in no output."""
    path, prompts = _prompts(tmp_path, 24, "three")
    outs = [tmp_path / f"out{i}" for i in range(3)]
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [
        _start(_args(path, out, redis, server), log) for out, log in zip(outs, logs, strict=True)
    ]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=120) == 0, log.read_text()
    stats = server.stats()
    assert stats["generations_created"] == len(prompts)
    assert {g["prompt"] for g in stats["generations"]} == set(prompts)
    where = _downloaded(outs)
    assert set(where) == set(prompts)
    assert all(len(folders) == 1 for folders in where.values())
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text
        assert KEY not in text
    batch_id = json.loads((outs[0] / "batch.json").read_text())["batch_id"]
    doc = _status(redis, batch_id)
    assert doc["jobs"] == len(prompts)
    assert doc["states"] == {JobState.DOWNLOADED.value: len(prompts)}


def test_a_killed_process_loses_nothing_and_its_rerun_fetches_its_videos(
    tmp_path: Path, redis: RedisServer, server: EmulatorServer
) -> None:
    """SIGKILL one of three processes mid-batch: the others take over its jobs (1 s leases);
    rerun with its --out, it fetches what it had finished. No prompt is generated twice;
    every input ends downloaded or reported uncertain (a create in flight at the kill)."""
    path, prompts = _prompts(tmp_path, 30, "killed")
    outs = [tmp_path / f"out{i}" for i in range(3)]
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [
        _start(_args(path, out, redis, server), log) for out, log in zip(outs, logs, strict=True)
    ]
    deadline = time.monotonic() + 60
    while server.stats(include_generations=False)["generations_created"] < 8:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(timeout=10)
    for proc, log in zip(procs[1:], logs[1:], strict=True):
        # 1 when this process reported inputs the dead one left uncertain (its creates in
        # flight at the kill): a reported outcome, not a crash.
        code = proc.wait(timeout=120)
        text = log.read_text()
        assert "Traceback" not in text
        reported = " uncertain, " in text and " completed, 0 failed, " in text
        assert code == 0 or (code == 1 and reported), text
    rerun = run_cli(*_args(path, outs[0], redis, server), env=_env(), timeout=120)
    no_traceback(rerun)

    stats = server.stats()
    by_prompt: dict[str, int] = {}
    for generation in stats["generations"]:
        by_prompt[generation["prompt"]] = by_prompt.get(generation["prompt"], 0) + 1
    assert all(n == 1 for n in by_prompt.values()), by_prompt  # never paid twice
    batch_id = json.loads((outs[1] / "batch.json").read_text())["batch_id"]
    doc = _status(redis, batch_id)
    states = doc["states"]
    assert set(states) <= {JobState.DOWNLOADED.value, JobState.UNCERTAIN.value}, states
    assert sum(states.values()) == len(prompts)
    uncertain = states.get(JobState.UNCERTAIN.value, 0)
    assert stats["generations_created"] + uncertain >= len(prompts)
    assert len(_downloaded(outs)) == states[JobState.DOWNLOADED.value]


def test_an_unreachable_store_is_a_clear_error_and_nothing_is_sent(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--store pointing at no Redis: one line naming the URL without its password; exit 1;
    the emulator saw no create."""
    path, _ = _prompts(tmp_path, 3, "unreachable")
    url = f"redis://me:hunter2@127.0.0.1:{free_port()}/0"
    result = run_cli(
        "batch",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--store",
        url,
        "--base-url",
        server.base_url,
        env=_env(),
    )
    no_traceback(result)
    assert result.returncode == 1
    assert "cannot reach the Redis store" in result.stderr
    assert "127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr
    assert server.stats(include_generations=False)["create_requests"] == 0


def test_a_sqlite_store_resumes_and_pays_nothing_twice(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--store sqlite:///...: the second run sends no create and reports the whole batch."""
    path, prompts = _prompts(tmp_path, 5, "sqlite")
    url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    out = tmp_path / "out"
    args = ["batch", str(path), "--out", str(out), "--store", url, "--base-url", server.base_url]
    args += ["--time-scale", str(TIME_SCALE)]
    first = run_cli(*args, env=_env())
    no_traceback(first)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--json", env=_env())
    no_traceback(second)
    assert second.returncode == 0, second.stderr
    assert server.stats(include_generations=False)["generations_created"] == len(prompts)
    summary = json.loads(second.stdout)
    assert summary["whole_batch"] == {"downloaded": len(prompts)}
    assert {r["prompt"] for r in read_manifest(out)} <= set(prompts)
    assert len(list(out.glob("*.mp4"))) == len(prompts)


def test_flags_a_shared_batch_does_not_take_are_refused_before_anything_is_sent(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--store with --retry-failed (or --resubmit-uncertain, --events, --force): a usage
    error naming the flag; the emulator saw no create."""
    path, _ = _prompts(tmp_path, 2, "refused")
    url = f"sqlite://{tmp_path / 'jobs.sqlite3'}"
    result = run_cli(
        "batch",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--store",
        url,
        "--retry-failed",
        "--base-url",
        server.base_url,
        env=_env(),
    )
    no_traceback(result)
    assert result.returncode == 2
    assert "--retry-failed cannot be combined with --store" in result.stderr
    assert server.stats(include_generations=False)["create_requests"] == 0


def _redis_dump(redis: RedisServer) -> str:
    """Every key in the Redis and every value under it, as text."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis.url)
    parts: list[str] = []
    try:
        for key in client.keys("*"):
            kind = client.type(key)
            value: Any
            if kind == b"string":
                value = client.get(key)
            elif kind == b"hash":
                value = client.hgetall(key)
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            elif kind == b"set":
                value = client.smembers(key)
            elif kind == b"zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == b"stream":
                value = client.xrange(key)
            else:
                value = kind
            parts.append(f"{key!r} {kind!r} {value!r}")
    finally:
        client.close()
    return "\n".join(parts)


def _budget_members(redis: RedisServer) -> int:
    """How many processes drew on the shared budget of ``KEY`` (its members set)."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis.url)
    try:
        return int(client.zcard(f"veo-async:budget:{{{budget_name(KEY)}}}:members"))
    finally:
        client.close()


def _run_two(
    tmp_path: Path, redis: RedisServer, server: EmulatorServer, tag: str, extra: list[str]
) -> tuple[list[str], list[Path], list[str]]:
    """Two CLI processes on one FILE and one Redis store, with ``extra`` flags; both must
    finish. Returns the prompts, the --out folders and the logs."""
    path, prompts = _prompts(tmp_path, 30, tag)
    outs = [tmp_path / f"out{i}" for i in range(2)]
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [
        _start([*_args(path, out, redis, server), *extra], log)
        for out, log in zip(outs, logs, strict=True)
    ]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=180) == 0, log.read_text()
    return prompts, outs, [log.read_text() for log in logs]


def test_two_processes_share_the_keys_rate_through_redis(
    tmp_path: Path, redis: RedisServer, limited_server: EmulatorServer
) -> None:
    """Two CLI processes with --rate 20 on one Redis store, against an emulator that allows
    20 real requests/s per key: --rate is the key's total, so the emulator answers no 429;
    both finish, each prompt generated once and downloaded once; both drew on one budget
    named after the key, and the key itself is nowhere in Redis (keys or values)."""
    prompts, outs, logs = _run_two(tmp_path, redis, limited_server, "rate", ["--rate", str(LIMIT)])
    stats = limited_server.stats()
    requests = stats["create_requests"] + stats["poll_requests"]
    print(f"\n{requests} requests, {stats['rate_limited']} 429s")
    assert stats["rate_limited"] == 0
    assert stats["generations_created"] == len(prompts)
    assert {g["prompt"] for g in stats["generations"]} == set(prompts)
    where = _downloaded(outs)
    assert set(where) == set(prompts)
    assert all(len(folders) == 1 for folders in where.values())
    for text in logs:
        assert "Traceback" not in text and KEY not in text
        assert f"{LIMIT:g} requests/s for all processes together" in text
    # Every process that created a job drew on the one budget. (Under a heavy load the second
    # process can start after the first has leased all 30 prompts; it then sends nothing.)
    working = {folder for folders in where.values() for folder in folders}
    assert 1 <= len(working) <= _budget_members(redis) <= 2
    dump = _redis_dump(redis)
    assert "budget" in dump and budget_name(KEY) in dump
    assert KEY not in dump and "SECRET" not in dump


def test_without_rate_the_processes_still_share_one_budget(
    tmp_path: Path, redis: RedisServer, limited_server: EmulatorServer
) -> None:
    """Two CLI processes without --rate on one Redis store, against a rate-limited emulator:
    each process that sends requests draws on the key's shared budget (for the pace their
    governors learn and publish), both finish, each prompt is generated once, and the key is
    nowhere in Redis."""
    prompts, outs, logs = _run_two(tmp_path, redis, limited_server, "norate", [])
    stats = limited_server.stats()
    print(
        f"\n{stats['create_requests'] + stats['poll_requests']} requests, "
        f"{stats['rate_limited']} 429s"
    )
    assert stats["generations_created"] == len(prompts)
    assert set(_downloaded(outs)) == set(prompts)
    for text in logs:
        assert "Traceback" not in text and KEY not in text
        assert "the pace learned from 429s" in text
    # every process that sent requests drew on the one budget (a process started late may
    # find no work left)
    working = sum(1 for out in outs if any(r.get("generation_id") for r in read_manifest(out)))
    assert working >= 1 and _budget_members(redis) == working
    dump = _redis_dump(redis)
    assert KEY not in dump and "SECRET" not in dump
