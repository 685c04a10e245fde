"""``veo-async`` as a new user first meets it: a real subprocess against a real emulator.

Each test is a step someone trying the command takes, and asserts what they should see and
what must hold: an event log with one line per job event and never the key, a cost estimate
before paying and a budget that refuses before anything is sent, an unknown model answered
with the closest known one, a refused connection that names the URL, hints that name real
commands, failures that point at --retry-failed with the progress line and the summary in
agreement, a manifest that exists even when the run is killed, files numbered from 1, a
capped not-done list, and no traceback for any user error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo_async._journal import JOURNAL_NAME
from veo_async._models import build_request
from veo_async._pricing import estimate_credits, format_credits
from veo_async.emulator import EmulatorConfig, EmulatorServer

from .._cli import no_traceback, read_manifest, run_cli

KEY = "firstrun-secret-key-7f3a"


def _env(*, key: bool = True, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIMLAPI_") and k != "VEO_ASYNC_TIME_SCALE"
    }
    if key:
        env["AIMLAPI_KEY"] = KEY
    env.update(extra)
    return env


def _cli(
    *args: str, cwd: Path | None = None, key: bool = True, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=_env(key=key), cwd=cwd, timeout=timeout)


_no_traceback = no_traceback


def _remote(server: EmulatorServer) -> list[str]:
    return ["--base-url", server.base_url, "--time-scale", "0.01", "--progress-interval", "0.3"]


_manifest = read_manifest


def _prompts(folder: Path, prompts: list[str], name: str = "p.txt") -> Path:
    path = folder / name
    path.write_text("# my prompts\n\n" + "\n".join(prompts) + "\n")
    return path


def _creates(server: EmulatorServer) -> int:
    return len(server.stats()["generations"])


@pytest.fixture(scope="module")
def module_server() -> Iterator[EmulatorServer]:
    """One real emulator server for the module."""
    with EmulatorServer(EmulatorConfig(time_scale=0.01, seed=11)) as srv:
        yield srv


@pytest.fixture
def server(module_server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, reset (empty ledger, no faults)."""
    module_server.reset()
    module_server.configure(
        api_key=None, faults={"job_error": 0.0, "lost_create": 0.0}, time_scale=0.01
    )
    return module_server


# --------------------------------------------------------------------------- --events


def test_events_log_has_every_job_event_and_never_the_key(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--events: per input submitting, submitted, status, succeeded, downloaded lines with
    time, input number, line and generation id; the API key is nowhere in the file."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl", "a lighthouse"])
    out, events = tmp_path / "out", tmp_path / "events.jsonl"
    result = _cli(
        "batch", str(prompts), "--out", str(out), "--events", str(events), *_remote(server)
    )
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    text = events.read_text()
    assert KEY not in text
    lines = [json.loads(line) for line in text.splitlines()]
    for entry in lines:
        assert {"time", "event", "input", "line", "generation_id", "status", "request_id"} <= set(
            entry
        )
    by_input: dict[int, list[str]] = {}
    for entry in lines:
        by_input.setdefault(entry["input"], []).append(entry["event"])
    assert sorted(by_input) == [1, 2, 3]
    manifest = {e["line"]: e for e in _manifest(out)}
    for kinds in by_input.values():
        assert kinds[0] == "submitting" and kinds[1] == "submitted"
        assert "status" in kinds and kinds[-2:] == ["succeeded", "downloaded"]
    for entry in lines:
        if entry["event"] != "submitting":
            assert entry["generation_id"] == manifest[entry["line"]]["generation_id"]
    assert {e["line"] for e in lines} == {3, 4, 5}


def test_journal_records_started_and_polls_for_the_report(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """The journal holds a `status` event {"status": "generating"} and the poll count of
    each input, which `veo-async report` turns into "started" and requests per input."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl"])
    out = tmp_path / "out"
    server.configure(time_scale=0.02)
    result = _cli("batch", str(prompts), "--out", str(out), *_remote(server))
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(out / JOURNAL_NAME)
    try:
        events = conn.execute("SELECT key, event, detail FROM events").fetchall()
    finally:
        conn.close()
    started = {
        k for k, e, d in events if e == "status" and json.loads(d) == {"status": "generating"}
    }
    polls = {k: json.loads(d).get("polls") for k, e, d in events if e == "completed"}
    assert len(polls) == 2 and all(isinstance(n, int) and n >= 1 for n in polls.values())
    assert started <= set(polls) and started  # seen generating at least once


# --------------------------------------------------------------------------- cost


def test_dry_run_prints_the_estimate_with_thousands_separators(tmp_path: Path) -> None:
    """--dry-run prints the estimated total, formatted like every other credit figure."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl"])
    result = _cli(
        "batch", str(prompts), "--out", str(tmp_path / "o"), "--dry-run", "--duration", "8"
    )
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    one = estimate_credits(build_request("x", model="veo2", duration=8))
    assert f"estimated cost: {format_credits(2 * one)} credits" in result.stderr
    assert "e+" not in result.stderr and not (tmp_path / "o").exists()


def test_credit_budget_refuses_before_anything_is_sent(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--credit-budget under the estimate: exit 2 with the figures, the server saw no create;
    at or over the estimate the batch runs; a rerun with nothing left to submit is not refused."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl"])
    total = 2 * estimate_credits(build_request("x", model="veo2"))
    low = str(total - 1)
    dry = _cli(
        "batch", str(prompts), "--out", str(tmp_path / "o"), "--dry-run", "--credit-budget", low
    )
    _no_traceback(dry)
    assert dry.returncode == 2 and "over --credit-budget" in dry.stderr
    real = _cli(
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
        "--credit-budget",
        low,
        *_remote(server),
    )
    _no_traceback(real)
    assert real.returncode == 2 and format_credits(total) in real.stderr
    assert _creates(server) == 0
    ok = _cli(
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
        "--credit-budget",
        str(total),
        *_remote(server),
    )
    assert ok.returncode == 0, ok.stderr
    assert _creates(server) == 2
    resume = _cli(
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
        "--credit-budget",
        low,
        *_remote(server),
    )
    assert resume.returncode == 0, resume.stderr  # nothing left to submit: nothing to refuse
    assert _creates(server) == 2


def test_unknown_price_is_said_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """An input whose model has no price counts as "unknown", not as zero or an error."""
    from veo_async import _pricing
    from veo_async._inputs import ParsedInput
    from veo_async.cli._batch import estimate

    prices = dict(_pricing.PRICES)
    prices.pop("veo2")
    monkeypatch.setattr(_pricing, "PRICES", prices)
    inputs = [ParsedInput(line=1, request=build_request("x", model="veo2"))]
    cost = estimate(inputs)
    assert cost.per_input == [None] and cost.largest is None
    assert "unknown" in cost.describe() and "veo2" in cost.describe()


# --------------------------------------------------------------------------- first-run errors


def test_unknown_model_suggests_the_closest(tmp_path: Path) -> None:
    """-m veo-2: exit 2, "did you mean 'veo2'" and the known models, for generate and batch."""
    prompts = _prompts(tmp_path, ["a red fox"])
    for args in (
        ["generate", "a fox", "-m", "veo-2", "--emulate"],
        ["batch", str(prompts), "--out", str(tmp_path / "o"), "-m", "veo-2", "--emulate"],
    ):
        result = _cli(*args)
        _no_traceback(result)
        assert result.returncode == 2
        assert "did you mean 'veo2'?" in result.stderr
        assert "veo2/image-to-video" in result.stderr  # the known models are listed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_names_the_url(tmp_path: Path) -> None:
    """Nothing listening: the error names the URL and asks whether a server runs there."""
    url = f"http://127.0.0.1:{_closed_port()}"
    # --time-scale compresses the back-off between the six connection attempts (the same
    # attempts; about 0.15 s of waiting instead of 15 s)
    result = _cli("status", "gen-1", "--base-url", url, "--time-scale", "0.01", "--json")
    _no_traceback(result)
    assert result.returncode == 1
    assert url in result.stderr and "Is a server running there?" in result.stderr


def test_no_key_hint_names_a_command_that_works(tmp_path: Path) -> None:
    """Without a key, the hint is the same command plus --emulate, and that command runs."""
    prompts = _prompts(tmp_path, ["a red fox"])
    result = _cli("batch", "p.txt", "--out", "o", cwd=tmp_path, key=False)
    _no_traceback(result)
    assert result.returncode == 2
    hint = "veo-async batch p.txt --out o --emulate"
    assert hint in result.stderr
    again = _cli(*hint.split()[1:], cwd=tmp_path, key=False)
    assert again.returncode == 0, again.stderr
    assert prompts.exists() and len(_manifest(tmp_path / "o")) == 1


def test_emulate_status_and_download_explain_forgotten_ids() -> None:
    """status/download --emulate of an id from another run explain the fresh emulator."""
    for args in (["status", "gen-from-yesterday"], ["download", "gen-from-yesterday"]):
        result = _cli(*args, "--emulate")
        _no_traceback(result)
        assert result.returncode == 1
        assert (
            "fresh in-process emulator" in result.stderr and "veo-async emulator" in result.stderr
        )


def test_local_server_without_time_scale_gets_one_note(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """A loopback --base-url with no --time-scale: one note names VEO_ASYNC_TIME_SCALE
    (the fix for jobs noticed long after the emulator finished them)."""
    prompts = _prompts(tmp_path, ["a red fox"])
    result = _cli(
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "o"),
        "--base-url",
        server.base_url,
        "--dry-run",
    )
    assert result.stderr.count("VEO_ASYNC_TIME_SCALE") == 0  # a dry run talks to nobody
    result = _cli(
        "batch", str(prompts), "--out", str(tmp_path / "o"), "--base-url", server.base_url,
        "--max-generations", "0",
    )  # fmt: skip
    _no_traceback(result)
    assert result.stderr.count("VEO_ASYNC_TIME_SCALE") == 1


# --------------------------------------------------------------------------- failures


def _last_progress(stderr: str) -> str:
    return [line for line in stderr.splitlines() if "finished:" in line][-1]


def test_failures_suggest_retry_failed_and_progress_agrees_with_summary(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """Every job fails: the last progress line and the summary say the same "failed N", the
    not-done list is capped with a count, and the hint's --retry-failed command exists."""
    n = 24
    prompts = _prompts(tmp_path, [f"prompt {i}" for i in range(n)])
    server.configure(faults={"job_error": 1.0})
    out = tmp_path / "o"
    result = _cli("batch", str(prompts), "--out", str(out), *_remote(server))
    _no_traceback(result)
    assert result.returncode == 1
    assert f"failed {n}" in _last_progress(result.stderr)
    this_run = next(line for line in result.stderr.splitlines() if line.startswith("this run:"))
    assert f"failed {n}" in this_run
    assert f"not done ({n}):" in result.stderr and f"... and {n - 20} more" in result.stderr
    retry = next(
        line.strip()
        for line in result.stderr.splitlines()
        if line.strip().endswith("--retry-failed")
    )
    server.configure(faults={"job_error": 0.0})
    again = _cli(*retry.split()[1:])
    assert again.returncode == 0, again.stderr
    assert all(e["state"] == "downloaded" for e in _manifest(out))


def test_different_inputs_message_names_both_files(tmp_path: Path, server: EmulatorServer) -> None:
    """Another file into the same folder: the refusal names the folder's file and this one."""
    first = _prompts(tmp_path, ["a red fox"], name="first.txt")
    second = _prompts(tmp_path, ["an owl"], name="second.txt")
    out = tmp_path / "o"
    assert _cli("batch", str(first), "--out", str(out), *_remote(server)).returncode == 0
    result = _cli("batch", str(second), "--out", str(out), *_remote(server))
    _no_traceback(result)
    assert result.returncode == 2
    assert f"from {first}" in result.stderr and f"with {second}" in result.stderr
    assert _creates(server) == 1


def test_files_numbered_from_one_in_input_order(tmp_path: Path, server: EmulatorServer) -> None:
    """Comment lines do not shift the numbers: the first video is 0001-, in input order."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl", "a lighthouse"])
    out = tmp_path / "o"
    assert _cli("batch", str(prompts), "--out", str(out), *_remote(server)).returncode == 0
    files = [e["file"] for e in sorted(_manifest(out), key=lambda e: e["line"])]
    assert [f[:5] for f in files] == ["0001-", "0002-", "0003-"]
    assert "red-fox" in files[0] and "lighthouse" in files[2]


def test_manifest_exists_when_the_run_is_killed(tmp_path: Path, server: EmulatorServer) -> None:
    """SIGKILL mid-run: manifest.jsonl is already there and holds the ids recorded so far."""
    server.configure(time_scale=1.0)  # jobs take real minutes: the run is mid-way when killed
    prompts = _prompts(tmp_path, ["a red fox", "an owl"])
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [
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
            "1",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (out / "manifest.jsonl").exists():
                entries = _manifest(out)
                if entries and all(e["generation_id"] for e in entries):
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    entries = _manifest(out)
    assert len(entries) == 2 and all(e["generation_id"] for e in entries)
    assert {e["state"] for e in entries} == {"submitted"}


# --------------------------------------------------------------------------- emulator command


def test_emulator_help_looks_like_the_other_commands() -> None:
    """`veo-async emulator --help` is click's help (Usage/Options, -h) like `batch --help`."""
    emulator = _cli("emulator", "--help")
    batch = _cli("batch", "--help")
    assert emulator.returncode == batch.returncode == 0
    for result, name in ((emulator, "emulator"), (batch, "batch")):
        assert result.stdout.startswith(f"Usage: veo-async {name} [OPTIONS]")
        assert "\nOptions:\n" in result.stdout and "-h, --help" in result.stdout
    assert "--time-scale FLOAT" in emulator.stdout and "--fault KIND=RATE" in emulator.stdout
    bad = _cli("emulator", "--fault", "nonsense=1")
    _no_traceback(bad)
    assert bad.returncode == 2 and "KIND=RATE" in bad.stderr


def test_verbose_log_lines_carry_the_generation_id(tmp_path: Path) -> None:
    """-v: each job event is a log line with the input, its line and its generation id; the
    key never appears."""
    prompts = _prompts(tmp_path, ["a red fox", "an owl"])
    out = tmp_path / "o"
    result = _cli("batch", str(prompts), "--out", str(out), "--emulate", "-v")
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stderr
    for entry in _manifest(out):
        gid = entry["generation_id"]
        assert f"submitted input={entry['line'] - 2} line={entry['line']} generation_id={gid}" in (
            result.stderr
        )
        assert f"succeeded input={entry['line'] - 2} line={entry['line']} generation_id={gid}" in (
            result.stderr
        )
