"""The batch command's crash safety, for real: subprocesses, SIGKILL/SIGINT, a real server.

The emulator's ledger is the ground truth: every input must end with exactly one generation
(an input whose create outcome was unknown may have zero or one, and must be reported), and
every downloaded file must match its manifest SHA-256 and the served MP4.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from veo_async._journal import JOURNAL_NAME
from veo_async.emulator import EmulatorConfig, EmulatorServer, FaultConfig, sample_video

pytestmark = pytest.mark.slow

SAMPLE_SHA = hashlib.sha256(sample_video()).hexdigest()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMLAPI_")}
    env["AIMLAPI_KEY"] = "crash-test-key"
    return env


def _command(
    prompts: Path, out: Path, server: EmulatorServer, scale: float, *extra: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "veo_async.cli",
        "batch",
        str(prompts),
        "--out",
        str(out),
        "--base-url",
        server.base_url,
        "--time-scale",
        str(scale),
        "--progress-interval",
        "0.5",
        *extra,
    ]


def _prompts(tmp_path: Path, n: int) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "prompts.txt"
    texts = [f"crash test scene number {i}: a lighthouse in a storm" for i in range(n)]
    path.write_text("# crash test\n" + "\n".join(texts) + "\n")
    return path, {text: line for line, text in enumerate(texts, start=2)}


def _journal_states(out: Path) -> dict[int, str]:
    path = out / JOURNAL_NAME
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(
            conn.execute(
                "SELECT l.line, j.state FROM jobs AS j "
                "JOIN job_lines AS l ON l.batch = j.batch AND l.key = j.key"
            )
        )
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def _check_ledger_and_files(
    server: EmulatorServer, out: Path, lines_by_prompt: dict[str, int], final_output: str
) -> Counter[str]:
    """Every input: one generation (uncertain: at most one, and reported); files intact."""
    stats = server.stats()
    per_prompt = Counter(record["prompt"] for record in stats["generations"])
    ids = {record["id"]: record["prompt"] for record in stats["generations"]}
    entries = {entry["line"]: entry for entry in _manifest(out)}
    assert sorted(entries) == sorted(lines_by_prompt.values())
    states: Counter[str] = Counter()
    for prompt, line in lines_by_prompt.items():
        entry = entries[line]
        states[entry["state"]] += 1
        assert per_prompt[prompt] <= 1, f"line {line} was created {per_prompt[prompt]} times"
        if entry["state"] == "downloaded":
            assert per_prompt[prompt] == 1
            assert ids[entry["generation_id"]] == prompt
            data = (out / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] == SAMPLE_SHA
        else:
            assert entry["state"] == "uncertain", entry
            assert f":{line} " in final_output  # reported by line number
    assert not list(out.glob(".*.part")), "a partial download was left behind"
    return states


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """A real emulator server: 1.8 s per veo2 job, some slow and some lost create answers."""
    faults = FaultConfig(slow_response=0.15, slow_response_delay=0.3, lost_create=0.05)
    config = EmulatorConfig(time_scale=0.04, seed=11, faults=faults)
    with EmulatorServer(config) as srv:
        yield srv


def test_sigkill_at_random_moments_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """Kill -9 the batch at seeded random moments, resume each time: no duplicate, no loss."""
    rng = random.Random(20250605)
    prompts, lines_by_prompt = _prompts(tmp_path, 20)
    out = tmp_path / "out"
    command = _command(prompts, out, server, 0.04, "--rate", "6", "--concurrency", "4")
    kills = 0
    started = time.monotonic()
    for _ in range(12):
        proc = subprocess.Popen(
            command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=rng.uniform(0.5, 1.6))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            break
    final = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    output = final.stdout + final.stderr
    states = _check_ledger_and_files(server, out, lines_by_prompt, output)
    assert final.returncode == (0 if states["uncertain"] == 0 else 1), output
    assert kills >= 3, "the runs finished too fast to be killed: nothing was tested"
    assert states["downloaded"] >= 10
    assert time.monotonic() - started < 60
    print(f"kills={kills} states={dict(states)} ledger={server.stats(include_generations=False)}")


def _wait_for_submissions(out: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _journal_states(out)
        if sum(1 for s in states.values() if s != "pending") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no submissions seen: {_journal_states(out)}")


def test_first_ctrl_c_stops_cleanly_and_the_rerun_finishes(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """SIGINT: exit 130 with a resume hint, no create left unrecorded; a rerun completes."""
    server.configure(faults={"slow_response": 0.0, "lost_create": 0.0}, time_scale=0.05)
    prompts, lines_by_prompt = _prompts(tmp_path, 8)
    out = tmp_path / "out"
    command = _command(prompts, out, server, 0.05, "--rate", "3")
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_submissions(out, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Resume with" in stderr and "veo-async batch" in stderr
    states = _journal_states(out)
    assert "submitting" not in states.values() and "uncertain" not in states.values()
    assert "pending" in states.values(), "the stop should have left inputs unsubmitted"
    created_before = server.stats()["generations_created"]
    assert created_before == sum(1 for s in states.values() if s != "pending")
    final = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert final.returncode == 0, final.stderr
    states_after = _check_ledger_and_files(server, out, lines_by_prompt, final.stderr)
    assert states_after == Counter(downloaded=8)
    assert server.stats()["generations_created"] == 8


def test_second_ctrl_c_exits_at_once(tmp_path: Path, server: EmulatorServer) -> None:
    """Two SIGINTs: the process is gone within seconds, and the journal is still usable."""
    server.configure(faults={"slow_response": 0.0, "lost_create": 0.0}, time_scale=0.05)
    prompts, lines_by_prompt = _prompts(tmp_path, 6)
    out = tmp_path / "out"
    command = _command(prompts, out, server, 0.05, "--rate", "3")
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_submissions(out, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 3
    final = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    output = final.stdout + final.stderr
    states = _check_ledger_and_files(server, out, lines_by_prompt, output)
    assert final.returncode == (0 if states["uncertain"] == 0 else 1), output
