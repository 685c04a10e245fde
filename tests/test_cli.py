"""Tests of the veo-async command (in process, with click's runner and the emulator)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner, Result

from veo_async._journal import Journal, JournalRow, JournalState
from veo_async.cli import main
from veo_async.cli._app import cli
from veo_async.emulator import Emulator, EmulatorConfig, EmulatorServer, sample_video

SAMPLE_SHA = hashlib.sha256(sample_video()).hexdigest()
# a veo2 job is about 0.1-0.2 s of real time: the tests need outcomes and their order, not time
SCALE = "0.002"


MODULE_CONFIG = EmulatorConfig(time_scale=float(SCALE), seed=7)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One real emulator server for the module (reset before each test that uses it)."""
    with EmulatorServer(MODULE_CONFIG) as srv:
        yield srv


@pytest.fixture
def emu(server: EmulatorServer) -> EmulatorServer:
    """The module's server, reset, with the module's whole config restored.

    Every setting is restored, not a list of them: a test's ``generation_time_factor=20``
    once leaked into every later test of the module and made each batch 20 times slower.
    """
    server.reset()
    server.configure(MODULE_CONFIG.model_dump())
    assert server.emulator.config == MODULE_CONFIG
    return server


def _run(args: list[str], *, env: dict[str, str | None] | None = None, **kw: Any) -> Result:
    environment: dict[str, str | None] = {
        "AIMLAPI_KEY": "test-key",
        "AIMLAPI_BASE_URL": None,
        "AIMLAPI_KEY_FILE": None,
    }
    environment.update(env or {})
    return CliRunner().invoke(cli, args, env=environment, catch_exceptions=False, **kw)


def _remote(server: EmulatorServer) -> list[str]:
    return ["--base-url", server.base_url, "--time-scale", SCALE]


def _manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]


def _journal_rows(out: Path) -> list[JournalRow]:
    async def read() -> list[JournalRow]:
        async with await Journal.open(out) as journal:
            return await journal.rows()

    return anyio.run(read)


# --------------------------------------------------------------------------- basics


def test_help_lists_the_commands() -> None:
    """--help names every command."""
    result = _run(["--help"])
    assert result.exit_code == 0
    for name in ("generate", "batch", "status", "download", "emulator", "models"):
        assert name in result.output


def test_missing_dependencies_print_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without click/rich the command prints the pip hint and exits 1, no traceback."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "click" else real(name, *a)
    )
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 1
    assert "pip install 'veo-async[cli]'" in capsys.readouterr().err


def test_python_dash_m_runs_the_command() -> None:
    """`python -m veo_async.cli` is the same command."""
    proc = subprocess.run(
        [sys.executable, "-m", "veo_async.cli", "models"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "veo2/image-to-video" in proc.stdout


def test_emulator_subcommand_passes_arguments_through() -> None:
    """`veo-async emulator` takes the emulator parser's options (defined once) as click options."""
    result = _run(["emulator", "--help"])
    assert result.exit_code == 0
    assert "--time-scale" in result.output and "--fault" in result.output
    result = _run(["emulator", "--no-such-flag"])
    assert result.exit_code == 2


def test_time_scale_option_reaches_the_client() -> None:
    """--time-scale sets the client's time scale, so polls match a compressed emulator."""
    import anyio

    from veo_async.cli._common import Settings, open_client

    async def scale_of(settings: Settings) -> float:
        async with open_client(settings) as client:
            return client.poll_policy.time_scale

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIMLAPI_KEY", "k")
        assert anyio.run(scale_of, Settings(base_url="http://127.0.0.1:1", time_scale=0.05)) == 0.05
    assert anyio.run(scale_of, Settings(emulate=True)) == 0.02


# --------------------------------------------------------------------------- generate


def test_generate_emulated_saves_the_video(tmp_path: Path) -> None:
    """generate --emulate needs no key, downloads the MP4 and reports it as JSON."""
    out = tmp_path / "fox.mp4"
    result = _run(
        ["generate", "a red fox", "-o", str(out), "--emulate", "--json", "--duration", "6"],
        env={"AIMLAPI_KEY": None},
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed"
    assert doc["request"] == {"model": "veo2", "prompt": "a red fox", "duration": 6}
    assert doc["sha256"] == SAMPLE_SHA == hashlib.sha256(out.read_bytes()).hexdigest()
    assert "completed" in result.stderr


def test_generate_refuses_to_overwrite_before_spending(tmp_path: Path, emu: EmulatorServer) -> None:
    """An existing output file stops the command before any create is sent."""
    out = tmp_path / "x.mp4"
    out.write_bytes(b"mine")
    result = _run(["generate", "a", "-o", str(out), *_remote(emu)])
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr
    assert emu.stats()["create_requests"] == 0
    assert out.read_bytes() == b"mine"


def test_generate_invalid_value_sends_nothing(emu: EmulatorServer) -> None:
    """A value the model does not allow is explained (allowed values, once) and nothing is sent."""
    result = _run(["generate", "a", "--duration", "4", *_remote(emu)])
    assert result.exit_code == 2
    assert "duration" in result.stderr and "5, 6, 7 or 8" in result.stderr
    assert "allowed:" not in result.stderr  # the message already lists them
    assert emu.stats()["create_requests"] == 0


def test_generate_image_file_becomes_image_to_video(tmp_path: Path, emu: EmulatorServer) -> None:
    """--image with a local file picks veo2/image-to-video and sends a data URI."""
    image = tmp_path / "frame.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    out = tmp_path / "v.mp4"
    result = _run(
        [
            "generate",
            "animate",
            "--image",
            str(image),
            "-o",
            str(out),
            "--field",
            "x_extra=1",
            *_remote(emu),
        ]
    )
    assert result.exit_code == 0, result.stderr
    (record,) = emu.stats()["generations"]
    assert record["model"] == "veo2/image-to-video"
    assert record["body"]["image_url"].startswith("data:image/png;base64,")
    assert record["body"]["x_extra"] == 1


def test_missing_key_says_how_to_set_it() -> None:
    """No key: the message shows AIMLAPI_KEY, --api-key-file and --emulate; exit 2."""
    result = _run(["generate", "a"], env={"AIMLAPI_KEY": None})
    assert result.exit_code == 2
    for text in ("AIMLAPI_KEY", "--api-key-file", "--emulate"):
        assert text in result.stderr


def test_key_file_is_used_and_no_key_is_ever_printed(tmp_path: Path, emu: EmulatorServer) -> None:
    """A wrong key gives a 401 message without the key; --api-key-file supplies the right one."""
    emu.configure(api_key="right-key-123")
    result = _run(["generate", "a", "-vv", *_remote(emu)], env={"AIMLAPI_KEY": "sk-WRONG-secret"})
    assert result.exit_code == 1
    assert "401" in result.stderr
    assert "sk-WRONG-secret" not in result.output + result.stderr
    key_file = tmp_path / "key"
    key_file.write_text("right-key-123\n")
    out = tmp_path / "a.mp4"
    result = _run(
        ["generate", "a", "-o", str(out), "--api-key-file", str(key_file), *_remote(emu)],
        env={"AIMLAPI_KEY": None},
    )
    assert result.exit_code == 0, result.stderr
    assert "right-key-123" not in result.output + result.stderr
    assert out.exists()


# --------------------------------------------------------------------------- status, download


def _create(server: EmulatorServer, prompt: str) -> str:
    response = httpx.post(
        server.url("/v2/video/generations"),
        json={"model": "veo2", "prompt": prompt},
        headers={"Authorization": "Bearer test-key"},
    )
    response.raise_for_status()
    return str(response.json()["id"])


def test_status_and_download(tmp_path: Path) -> None:
    """status shows ids (JSON too); download refuses unfinished jobs unless --wait."""
    # The emulator's clock stands still until the test lets the job finish, so `status` and
    # the refused download find it unfinished however loaded the machine is (a 9 s generation
    # used to buy that), and `download --wait` really polls until the clock jumps past it.
    frozen_at = time.time()
    finished = threading.Event()

    def clock() -> float:
        return time.time() + 10.0 if finished.is_set() else frozen_at

    emulator = Emulator(EmulatorConfig(time_scale=float(SCALE), seed=7), clock=clock)
    with EmulatorServer(emulator=emulator) as emu:
        _status_and_download(tmp_path, emu, finished)


def _status_and_download(tmp_path: Path, emu: EmulatorServer, finished: threading.Event) -> None:
    gid = _create(emu, "an owl")
    result = _run(["status", gid, "--json", *_remote(emu)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["status"] in ("queued", "generating")
    result = _run(["download", gid, "-o", str(tmp_path / "o.mp4"), *_remote(emu)])
    assert result.exit_code == 1
    assert "--wait" in result.stderr
    assert emu.stats()["generations_by_status"] == {"queued": 1}
    polls_before = emu.stats(include_generations=False)["poll_requests"]

    def finish_once_polled() -> None:
        # the job ends only after `download --wait` has seen it unfinished
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if emu.stats(include_generations=False)["poll_requests"] > polls_before:
                break
            time.sleep(0.01)
        finished.set()

    finisher = threading.Thread(target=finish_once_polled, daemon=True)
    finisher.start()
    result = _run(["download", gid, "-o", str(tmp_path), "--wait", "--json", *_remote(emu)])
    finisher.join(5)
    # it polled the unfinished job, kept waiting, and polled again once it had ended
    assert emu.stats(include_generations=False)["poll_requests"] >= polls_before + 2
    assert result.exit_code == 0, result.stderr
    saved = Path(json.loads(result.stdout)["file"])
    assert saved.parent == tmp_path
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == SAMPLE_SHA
    result = _run(["status", gid, "no-such-id", *_remote(emu)])
    assert result.exit_code == 1
    assert "completed" in result.stdout and "lookup failed" in result.stdout


# --------------------------------------------------------------------------- batch


def _prompts(tmp_path: Path, n: int = 4, name: str = "p.txt") -> Path:
    path = tmp_path / name
    lines = ["# test prompts", ""] + [f"prompt number {i} of a test" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_batch_emulated_downloads_everything(tmp_path: Path) -> None:
    """batch --emulate makes every video, names files 0001.. in input order, writes the manifest."""
    prompts = _prompts(tmp_path)
    out = tmp_path / "out"
    result = _run(["batch", str(prompts), "--out", str(out), "--emulate", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["downloaded"] == 4 and summary["problems"] == []
    entries = _manifest(out)
    assert [e["line"] for e in entries] == [3, 4, 5, 6]
    for number, entry in enumerate(entries, start=1):
        assert entry["state"] == "downloaded" and entry["status"] == "completed"
        assert entry["file"].startswith(f"{number:04d}-prompt-number-")
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] == SAMPLE_SHA
        assert entry["credits"] and entry["video_url"] and entry["generation_id"]


def test_batch_bad_input_reports_lines_and_spends_nothing(
    tmp_path: Path, emu: EmulatorServer
) -> None:
    """Any bad line: every problem is listed with file:line, exit 2, no create, no journal."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": ""}\n{bad\n{"prompt": "x", "duration": 4}\n')
    out = tmp_path / "out"
    result = _run(["batch", str(path), "--out", str(out), *_remote(emu)])
    assert result.exit_code == 2
    for line in (2, 3, 4):
        assert f"{path}:{line}:" in result.stderr
    assert emu.stats()["create_requests"] == 0
    assert not out.exists()


def test_batch_dry_run_validates_only(tmp_path: Path) -> None:
    """--dry-run checks the inputs and sends nothing (no key needed)."""
    result = _run(
        ["batch", str(_prompts(tmp_path)), "--out", str(tmp_path / "o"), "--dry-run"],
        env={"AIMLAPI_KEY": None},
    )
    assert result.exit_code == 0
    assert "4 valid inputs" in result.stderr
    assert not (tmp_path / "o").exists()


def test_batch_stdin_csv_defaults(tmp_path: Path, emu: EmulatorServer) -> None:
    """'-' reads stdin; flags are defaults; CSV rows override them."""
    text = "prompt,duration\nfirst,\nsecond,8\n"
    out = tmp_path / "out"
    result = _run(
        ["batch", "-", "--format", "csv", "--out", str(out), "--duration", "6", *_remote(emu)],
        input=text,
    )
    assert result.exit_code == 0, result.stderr
    assert [e["request"].get("duration") for e in _manifest(out)] == [6, 8]


def test_batch_rerun_resumes_without_new_creates(tmp_path: Path, emu: EmulatorServer) -> None:
    """A rerun submits nothing new, re-downloads a missing or corrupted file, drops .part files."""
    prompts = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    args = ["batch", str(prompts), "--out", str(out), *_remote(emu)]
    assert _run(args).exit_code == 0
    created = emu.stats()["generations_created"]
    assert created == 3
    first, second, _ = _manifest(out)
    (out / first["file"]).unlink()
    (out / second["file"]).write_bytes(b"garbage")
    stale = out / f".{first['file']}.0123abcd.part"
    stale.write_bytes(b"half a video")
    result = _run(args)
    assert result.exit_code == 0, result.stderr
    assert "downloading it again" in result.stderr
    assert not stale.exists()
    assert emu.stats()["generations_created"] == created
    for entry in _manifest(out):
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == SAMPLE_SHA


def test_batch_refuses_a_different_input_file_unless_forced(
    tmp_path: Path, emu: EmulatorServer
) -> None:
    """Resuming with other inputs is refused; --force submits only the new lines."""
    out = tmp_path / "out"
    one = _prompts(tmp_path, 2, "one.txt")
    assert _run(["batch", str(one), "--out", str(out), *_remote(emu)]).exit_code == 0
    two = _prompts(tmp_path, 3, "two.txt")
    result = _run(["batch", str(two), "--out", str(out), *_remote(emu)])
    assert result.exit_code == 2
    assert "different inputs" in result.stderr and "--force" in result.stderr
    assert emu.stats()["generations_created"] == 2
    result = _run(["batch", str(two), "--out", str(out), "--force", *_remote(emu)])
    assert result.exit_code == 0, result.stderr
    assert emu.stats()["generations_created"] == 3


def test_uncertain_inputs_are_reported_not_resubmitted(tmp_path: Path, emu: EmulatorServer) -> None:
    """A create that died in flight is reported (exit 1); --resubmit-uncertain sends it."""
    prompts = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    args = ["batch", str(prompts), "--out", str(out), *_remote(emu)]
    assert _run([*args, "--dry-run"]).exit_code == 0
    # Simulate a crash between the intent and the id on line 4 of an earlier run.
    from veo_async._inputs import body_hash, load_inputs, redact_body, request_fingerprint

    inputs = load_inputs(str(prompts))

    async def crash_mid_create() -> None:
        async with await Journal.open(out) as journal:
            keys = await journal.match_inputs(
                (i.line, redact_body(i.request.to_body()), body_hash(i.request)) for i in inputs
            )
            await journal.set_meta("fingerprint", request_fingerprint(inputs))
            await journal.set_meta("target", f"{emu.base_url} universal")
            assert inputs[1].line == 4
            await journal.record_intent(keys[1])

    anyio.run(crash_mid_create)
    result = _run([*args, "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert [(p["line"], p["state"]) for p in summary["problems"]] == [(4, "uncertain")]
    assert f"{prompts}:4" in result.stderr and "--resubmit-uncertain" in result.stderr
    assert emu.stats()["generations_created"] == 2
    result = _run([*args, "--resubmit-uncertain"])
    assert result.exit_code == 0, result.stderr
    assert emu.stats()["generations_created"] == 3


def test_lost_create_is_uncertain(tmp_path: Path, emu: EmulatorServer) -> None:
    """A create whose answer was lost is recorded as uncertain, never retried."""
    emu.configure(faults={"lost_create": 1.0})
    out = tmp_path / "out"
    result = _run(["batch", str(_prompts(tmp_path, 2)), "--out", str(out), *_remote(emu)])
    assert result.exit_code == 1
    assert {e["state"] for e in _manifest(out)} == {"uncertain"}
    assert emu.stats()["create_requests"] == 2


def test_failed_generations_give_exit_1_and_line_numbers(
    tmp_path: Path, emu: EmulatorServer
) -> None:
    """Failed generations are listed with their line and reason; the exit code is 1."""
    emu.configure(faults={"job_error": 1.0})
    prompts = _prompts(tmp_path, 2)
    out = tmp_path / "out"
    result = _run(["batch", str(prompts), "--out", str(out), *_remote(emu)])
    assert result.exit_code == 1
    for entry in _manifest(out):
        assert entry["state"] == "failed" and entry["error"]
        assert f"{prompts}:{entry['line']}" in result.stderr
    assert {r.state for r in _journal_rows(out)} == {JournalState.FAILED}
    emu.configure(faults={"job_error": 0.0})
    result = _run(["batch", str(prompts), "--out", str(out), "--retry-failed", *_remote(emu)])
    assert result.exit_code == 0, result.stderr
    assert all(e["previous_generation_ids"] for e in _manifest(out))


def test_emulated_batch_rerun_resubmits_what_the_old_emulator_had(tmp_path: Path) -> None:
    """With --emulate, ids of an earlier process's emulator are made again (free)."""
    prompts = _prompts(tmp_path, 2)
    out = tmp_path / "out"
    assert _run(["batch", str(prompts), "--out", str(out), "--emulate"]).exit_code == 0

    async def lose_first_file() -> None:
        async with await Journal.open(out) as journal:
            await journal.record_file_lost((await journal.rows())[0].key, "simulated")

    anyio.run(lose_first_file)
    result = _run(["batch", str(prompts), "--out", str(out), "--emulate"])
    assert result.exit_code == 0, result.stderr
    entries = _manifest(out)
    assert entries[0]["previous_generation_ids"] and entries[0]["state"] == "downloaded"


def test_live_displays_render(capsys: pytest.CaptureFixture[str]) -> None:
    """The rich progress bar and status line (TTY mode) render counts without errors."""
    from veo_async._engine import BatchCounts
    from veo_async._models import Generation
    from veo_async.cli._display import Display as _Display
    from veo_async.cli._run import RunStats
    from veo_async.cli._single import StatusLine

    stats = RunStats(counts=BatchCounts(submitted=2, running=1, done=1), downloaded=1)
    with _Display(stats, 2, live=True, interval=1.0) as display:
        display.refresh()
    with StatusLine(live=True) as line:
        line.update(Generation.model_validate({"id": "g-1", "status": "generating"}))
    err = capsys.readouterr().err
    assert "submitted 2, running 1, done 1" in err
