"""``veo-async batch`` at its boundaries, run as a user runs it: a real subprocess, real files.

Ground truth is what a server saw: the emulator's ledger (every generation it created, with
its prompt) or a hostile server's count of POSTs. Each test states the invariant it holds:
no header row or raw JSON line is ever paid for as a prompt, no input is paid twice or handed
another input's video when lines move, emulated and real results never share a folder, one
bad download does not end a batch, a full disk loses no id, an input file cannot pull local
files from outside its folder, and a user error is one line of text, never a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import HostileServer, Recorded, Reply, generation
from veo_async._journal import JOURNAL_NAME
from veo_async.emulator import EmulatorConfig, EmulatorServer, sample_video

from .._cli import no_traceback, read_manifest, run_cli

SAMPLE_SHA = hashlib.sha256(sample_video()).hexdigest()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMLAPI_")}
    env["AIMLAPI_KEY"] = "boundary-test-key"
    env.update(extra)
    return env


def _cli(
    *args: str, stdin: str | bytes | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    data = stdin.decode("utf-8") if isinstance(stdin, bytes) else stdin
    return run_cli(*args, env=_env(), cwd=cwd, stdin=data, timeout=timeout)


_no_traceback = no_traceback


# a veo2 job is about 0.1-0.2 s of real time: these tests need outcomes, not time
SCALE = "0.002"


def _remote(server: EmulatorServer) -> list[str]:
    return ["--base-url", server.base_url, "--time-scale", SCALE, "--progress-interval", "0.5"]


_manifest = read_manifest


def _ledger(server: EmulatorServer) -> Counter[str]:
    """How many generations the server created for each prompt."""
    return Counter(g["prompt"] for g in server.stats()["generations"])


@pytest.fixture(scope="module")
def module_server() -> Iterator[EmulatorServer]:
    """One real emulator server for the module."""
    with EmulatorServer(EmulatorConfig(time_scale=float(SCALE), seed=3)) as srv:
        yield srv


@pytest.fixture
def server(module_server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, reset (empty ledger, no faults)."""
    module_server.reset()
    module_server.configure(api_key=None, faults={"job_error": 0.0, "lost_create": 0.0})
    return module_server


# --------------------------------------------------------------------------- item 3: formats

_PROMPTS = ["a red fox in snow", "an owl, at night", "a lighthouse in a storm"]
_CSV = "prompt,duration\n" + "".join(f'"{p}",6\n' for p in _PROMPTS)
_TSV = "prompt\tduration\n" + "".join(f"{p}\t6\n" for p in _PROMPTS)
_SEMI = "prompt;duration\n" + "".join(f"{p};6\n" for p in _PROMPTS)
_JSONL = "".join(json.dumps({"prompt": p, "duration": 6}) + "\n" for p in _PROMPTS)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("prompts", _CSV),  # no suffix
        ("prompts.tsv", _TSV),
        ("prompts.csv.txt", _CSV),
        ("prompts.txt", _TSV),
        ("prompts.csv", _SEMI),  # Excel in a ;-locale
        ("prompts", "\ufeff" + _JSONL),  # BOM, no suffix
        ("prompts.jsonl", "\ufeff" + _JSONL),
        ("prompts.txt", "\ufeff" + _CSV),
        ("-", _CSV),  # stdin
        ("-", _TSV),
        ("-", "\ufeff" + _JSONL),
    ],
)
def test_tables_and_json_lines_are_read_by_content(tmp_path: Path, name: str, content: str) -> None:
    """Every shape gives exactly the three prompts, duration 6: no header or JSON as a prompt."""
    if name == "-":
        result = _cli(
            "batch", "-", "--out", str(tmp_path / "o"), "--dry-run", "--json", stdin=content
        )
    else:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8"))
        result = _cli("batch", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--json")
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    requests = [r["request"] for r in json.loads(result.stdout)["requests"]]
    assert [(r["prompt"], r.get("duration")) for r in requests] == [(p, 6) for p in _PROMPTS]


def test_csv_on_stdin_pays_once_per_row_and_never_for_the_header(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """A real run of a CSV piped in: the server created exactly one generation per data row."""
    out = tmp_path / "out"
    result = _cli("batch", "-", "--out", str(out), *_remote(server), stdin=_CSV)
    assert result.returncode == 0, result.stderr
    assert _ledger(server) == Counter(_PROMPTS)
    assert server.stats()["create_requests"] == 3


@pytest.mark.parametrize(
    ("content", "line", "hint"),
    [
        ("text,duration\na fox,6\n", 1, "--format csv"),
        ("# my prompts\nPrompt;Duration\na fox;6\n", 2, "--format csv"),
        ("a fox\t6\nan owl\t8\n", 1, "--format tsv"),
        ('a fox\n{"prompt": "an owl"}\n', 2, "--format jsonl"),
        ('{"prompt": "a fox",\n', 1, "--format jsonl"),
    ],
)
def test_ambiguous_input_is_refused_with_file_line_and_format(
    tmp_path: Path, server: EmulatorServer, content: str, line: int, hint: str
) -> None:
    """Input that could be read two ways: exit 2, file:line and the --format to pass, no create."""
    path = tmp_path / "prompts"
    path.write_text(content)
    result = _cli("batch", str(path), "--out", str(tmp_path / "o"), *_remote(server))
    _no_traceback(result)
    assert result.returncode == 2
    assert f"{path}:{line}:" in result.stderr and hint in result.stderr
    assert "--format txt" in result.stderr
    assert server.stats()["create_requests"] == 0
    assert not (tmp_path / "o").exists()


def test_format_txt_sends_each_line_as_asked(tmp_path: Path) -> None:
    """--format txt overrides the sniffing: the user asked for every line as a prompt."""
    path = tmp_path / "prompts"
    path.write_text("text,duration\na fox,6\n")
    result = _cli(
        "batch", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--json", "--format", "txt"
    )
    assert result.returncode == 0, result.stderr
    prompts = [r["request"]["prompt"] for r in json.loads(result.stdout)["requests"]]
    assert prompts == ["text,duration", "a fox,6"]


def test_utf16_input_is_refused(tmp_path: Path) -> None:
    """A UTF-16 file (Excel 'Unicode text') is refused with a hint, not read as garbage prompts."""
    path = tmp_path / "prompts.txt"
    path.write_bytes("prompt\ta fox\n".encode("utf-16"))
    result = _cli("batch", str(path), "--out", str(tmp_path / "o"), "--dry-run")
    _no_traceback(result)
    assert result.returncode == 2 and "UTF-16" in result.stderr


# --------------------------------------------------------------------------- item 4: content keys


def _check_manifest_against_ledger(out: Path, path: Path, server: EmulatorServer) -> None:
    """Each manifest entry with a line holds that line's prompt and a video made for it."""
    lines = path.read_text().splitlines()
    by_id = {g["id"]: g["prompt"] for g in server.stats()["generations"]}
    current = [e for e in _manifest(out) if e["line"] is not None]
    content = [
        n for n, text in enumerate(lines, start=1) if text.strip() and not text.startswith("#")
    ]
    assert sorted(e["line"] for e in current) == content  # every input line accounted for
    for entry in current:
        assert entry["request"]["prompt"] == lines[entry["line"] - 1].strip()
        assert by_id[entry["generation_id"]] == entry["request"]["prompt"]
        assert entry["state"] == "downloaded"
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == SAMPLE_SHA


def test_a_line_inserted_at_the_top_pays_only_for_the_new_prompt(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """Insert a line, rerun with --force: shifted prompts not paid again, the new one made."""
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(_PROMPTS) + "\n")
    out = tmp_path / "out"
    assert _cli("batch", str(path), "--out", str(out), *_remote(server)).returncode == 0
    assert _ledger(server) == Counter(_PROMPTS)
    path.write_text("a brand new first prompt\n" + "\n".join(_PROMPTS) + "\n")
    refused = _cli("batch", str(path), "--out", str(out), *_remote(server))
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert server.stats()["create_requests"] == 3
    result = _cli("batch", str(path), "--out", str(out), "--force", "--json", *_remote(server))
    assert result.returncode == 0, result.stderr
    assert _ledger(server) == Counter([*_PROMPTS, "a brand new first prompt"])
    summary = json.loads(result.stdout)
    assert summary["inputs"] == 4 and summary["downloaded"] == 4 and summary["problems"] == []
    assert summary["this_run"]["submitted"] == 1
    _check_manifest_against_ledger(out, path, server)


def test_duplicates_and_edits_are_matched_by_content(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """Duplicates are distinct inputs; an edited line is generated anew, the old video is kept."""
    path = tmp_path / "prompts.txt"
    path.write_text("same prompt\nsame prompt\nthe third\n")
    out = tmp_path / "out"
    assert _cli("batch", str(path), "--out", str(out), *_remote(server)).returncode == 0
    assert _ledger(server) == Counter({"same prompt": 2, "the third": 1})
    path.write_text("same prompt\nthe third, edited\nsame prompt\nsame prompt\n")
    result = _cli("batch", str(path), "--out", str(out), "--force", "--json", *_remote(server))
    assert result.returncode == 0, result.stderr
    assert _ledger(server) == Counter({"same prompt": 3, "the third": 1, "the third, edited": 1})
    summary = json.loads(result.stdout)
    assert (summary["inputs"], summary["downloaded"], summary["problems"]) == (4, 4, [])
    _check_manifest_against_ledger(out, path, server)
    gone = [e for e in _manifest(out) if e["line"] is None]
    assert [(e["request"]["prompt"], e["state"]) for e in gone] == [("the third", "downloaded")]
    assert (out / gone[0]["file"]).exists()
    rerun = _cli("batch", str(path), "--out", str(out), *_remote(server))
    assert rerun.returncode == 0, rerun.stderr
    assert server.stats()["create_requests"] == 5


# --------------------------------------------------------------------------- item 5: services


def test_emulated_and_real_results_never_share_a_folder(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """--emulate then a real service (and back): refused, even with --force; nothing created."""
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(_PROMPTS) + "\n")
    emulated = tmp_path / "emulated"
    assert _cli("batch", str(path), "--out", str(emulated), "--emulate").returncode == 0
    for extra in ([], ["--force"]):
        result = _cli("batch", str(path), "--out", str(emulated), *_remote(server), *extra)
        _no_traceback(result)
        assert result.returncode == 2
        assert "emulator" in result.stderr and "another --out folder" in result.stderr
    assert server.stats()["create_requests"] == 0
    real = tmp_path / "real"
    assert _cli("batch", str(path), "--out", str(real), *_remote(server)).returncode == 0
    result = _cli("batch", str(path), "--out", str(real), "--emulate", "--force")
    assert result.returncode == 2 and "emulator" in result.stderr, result.stderr
    assert {e["state"] for e in _manifest(real)} == {"downloaded"}
    assert server.stats()["create_requests"] == 3


# --------------------------------------------------------------------------- item 10: downloads


def test_one_bad_download_is_that_jobs_failure_and_the_rerun_retries_it(tmp_path: Path) -> None:
    """An unparsable video URL fails one job (journalled); the others download; a rerun retries."""
    counter = itertools.count(1)
    bad_url = {"value": "http://[::1/v.mp4"}
    prompts_by_id: dict[str, str] = {}

    def script(req: Recorded) -> Reply:
        if req.method == "POST":
            gid = f"g{next(counter)}"
            prompts_by_id[gid] = req.json()["prompt"]
            return Reply.json(generation(gid))
        if req.path.startswith("/videos/"):
            return Reply(headers=[("Content-Type", "video/mp4")], body=sample_video())
        gid = req.query["generation_id"]
        url = f"{hostile.url}/videos/{gid}.mp4"
        if prompts_by_id[gid] == "the broken one":
            url = bad_url["value"]
        return Reply.json(generation(gid, "completed", url))

    path = tmp_path / "prompts.txt"
    path.write_text("first\nthe broken one\nthird\n")
    out = tmp_path / "out"
    with HostileServer(script) as hostile:
        args = [
            "batch",
            str(path),
            "--out",
            str(out),
            "--base-url",
            hostile.url,
            "--time-scale",
            "0.01",
        ]
        result = _cli(*args, "--json")
        _no_traceback(result)
        assert result.returncode == 1, result.stderr
        states = {e["request"]["prompt"]: e["state"] for e in _manifest(out)}
        assert states == {
            "first": "downloaded",
            "the broken one": "completed",
            "third": "downloaded",
        }
        problem = json.loads(result.stdout)["problems"]
        assert [(p["line"], p["state"]) for p in problem] == [(2, "completed")]
        assert problem[0]["error"].startswith("download:")
        bad_url["value"] = f"{hostile.url}/videos/fixed.mp4"
        rerun = _cli(*args)
        assert rerun.returncode == 0, rerun.stderr
        assert {e["state"] for e in _manifest(out)} == {"downloaded"}
        assert hostile.count("POST") == 3


# --------------------------------------------------------------------------- item 11: disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs); skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True, timeout=10)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the filesystem of ``folder`` until about ``leave`` bytes are free."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_loses_no_id_and_the_rerun_pays_nothing_twice(
    tmp_path: Path, server: EmulatorServer, small_disk: Path
) -> None:
    """Disk full under --out: one-line error naming the disk, no id lost, no temp file left."""
    path = tmp_path / "prompts.txt"
    prompts = [f"disk full scene {i}" for i in range(24)]
    path.write_text("\n".join(prompts) + "\n")
    out = small_disk / "out"
    # Room for the journal, its 256 KiB reserve and a few of the 24 videos (22 KB each): even
    # with the reserve released, the disk is full before every video is down.
    filler = _fill(small_disk, 256 * 1024 + 150_000)
    first = _cli("batch", str(path), "--out", str(out), *_remote(server), "--json")
    print(first.stderr)
    _no_traceback(first)
    assert first.returncode != 0, "the disk was not full after all: nothing was tested"
    assert "is full" in first.stderr
    assert not list(out.glob(".manifest*.tmp"))
    filler.unlink()
    # Every generation the server made has its id in the journal, or (if even that write
    # failed) on stderr: none is lost.
    conn = sqlite3.connect(out / JOURNAL_NAME)
    journalled = {row[0] for row in conn.execute("SELECT generation_id FROM jobs")}
    conn.close()
    made = {g["id"] for g in server.stats()["generations"]}
    assert made, "nothing was created: nothing was tested"
    assert all(gid in journalled or gid in first.stderr for gid in made)
    final = _cli("batch", str(path), "--out", str(out), *_remote(server), "--json")
    _no_traceback(final)
    ledger = _ledger(server)
    assert all(ledger[p] <= 1 for p in prompts), ledger  # nothing paid twice
    entries = _manifest(out)
    assert sorted(e["line"] for e in entries) == list(range(1, 25))  # every input accounted for
    for entry in entries:
        assert entry["state"] in ("downloaded", "uncertain"), entry
        if entry["state"] == "downloaded":
            data = (out / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == SAMPLE_SHA
    assert final.returncode == (0 if {e["state"] for e in entries} == {"downloaded"} else 1)
    assert not [p for p in out.iterdir() if p.name.endswith((".part", ".tmp"))]


def test_an_id_the_journal_cannot_take_is_printed(tmp_path: Path, server: EmulatorServer) -> None:
    """The journal refuses the id write (disk full): the id is on stderr, the run stops."""
    path = tmp_path / "prompts.txt"
    path.write_text("only one\n")
    out = tmp_path / "out"
    code = (
        "import errno, sys\n"
        "from veo_async import _journal\n"
        "def full(self, *a, **k):\n"
        "    raise _journal.JournalError('cannot write the journal: ' + _journal.disk_problem(\n"
        "        self.folder, OSError(errno.ENOSPC, 'No space left on device')))\n"
        "_journal.Journal.record_submitted = full\n"
        "from veo_async.cli import main\n"
        "sys.argv[0] = 'veo-async'\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "batch", str(path), "--out", str(out), *_remote(server)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    _no_traceback(result)
    assert result.returncode == 1, result.stderr
    (made,) = server.stats()["generations"]
    assert made["id"] in result.stderr and "full" in result.stderr
    assert f"veo-async download {made['id']}" in result.stderr
    assert server.stats()["create_requests"] == 1


# --------------------------------------------------------------------------- item 19: local files


def test_input_files_name_media_only_in_their_folder(tmp_path: Path) -> None:
    """Paths out of the file's folder (absolute, .., a symlink out) are refused unless allowed."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG top secret")
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "frame.png").write_bytes(b"\x89PNG fine")
    (folder / "link.png").symlink_to(secret)
    rows = [
        {"prompt": "ok", "model": "veo2/image-to-video", "image_url": "frame.png"},
        {"prompt": "abs", "model": "veo2/image-to-video", "image_url": str(secret)},
        {"prompt": "up", "model": "veo2/image-to-video", "image_url": "../secret.png"},
        {"prompt": "link", "model": "veo2/image-to-video", "image_url": "link.png"},
        {"prompt": "etc", "model": "veo2/image-to-video", "image_url": "/etc/passwd"},
    ]
    path = folder / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _cli("batch", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--json")
    _no_traceback(result)
    assert result.returncode == 2
    for line in (2, 3, 4, 5):
        assert f"{path}:{line}: image_url:" in result.stderr
    assert f"{path}:1:" not in result.stderr
    assert "--allow-media-outside" in result.stderr and "top secret" not in result.stdout
    allowed = _cli(
        "batch",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--dry-run",
        "--json",
        "--allow-media-outside",
    )
    assert allowed.returncode == 0, allowed.stderr
    assert len(json.loads(allowed.stdout)["requests"]) == 5


def test_a_key_file_others_can_read_gets_a_warning(tmp_path: Path, server: EmulatorServer) -> None:
    """--api-key-file readable by group/others warns on stderr (never printing the key)."""
    key = tmp_path / "key"
    key.write_text(f"secret-{uuid.uuid4().hex}\n")
    prompts = tmp_path / "p.txt"
    prompts.write_text("one prompt\n")
    for mode, warned in ((0o644, True), (0o600, False)):
        key.chmod(mode)
        out = tmp_path / f"o{mode:o}"
        result = _cli(
            "batch", str(prompts), "--out", str(out), "--api-key-file", str(key), *_remote(server)
        )
        assert result.returncode == 0, result.stderr
        assert ("warning: the API key file" in result.stderr) is warned
        assert ("chmod 600" in result.stderr) is warned
        assert key.read_text().strip() not in result.stderr + result.stdout


# --------------------------------------------------------------------------- smaller items


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--field", "prompt=something else"], "--field prompt=... is not allowed"),
        (["--field", "model=google/veo3"], "use --model"),
        (["--field", "duration=99"], "duration"),
        (["--duration", "6", "--field", "duration=8"], "given twice"),
        (["--rate", "nan"], "not a finite number"),
        (["--rate", "inf"], "not a finite number"),
        (["--rate", "-1"], "--rate"),
        (["--job-timeout", "nan"], "not a finite number"),
        (["--time-scale", "inf"], "not a finite number"),
    ],
)
def test_bad_options_are_one_line_errors_and_send_nothing(
    tmp_path: Path, server: EmulatorServer, args: list[str], words: str
) -> None:
    """--field prompt/model, an unvalidated --field, NaN/inf/negative numbers: exit 2, no create."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("one prompt\n")
    result = _cli("batch", str(prompts), "--out", str(tmp_path / "o"), *_remote(server), *args)
    _no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert server.stats()["create_requests"] == 0


def test_a_known_field_is_validated_and_a_row_wins(tmp_path: Path) -> None:
    """--field of a known field is a validated default (a row wins); unknown keys go as-is."""
    model = "veo-3.1-lite-generate-001"
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b", "person_generation": "dont_allow"}\n')
    args = ["batch", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--json"]
    fields = ["--field", "person_generation=allow_adult", "--field", "custom_flag=1"]
    result = _cli(*args, "--model", model, *fields)
    assert result.returncode == 0, result.stderr
    bodies = [r["request"] for r in json.loads(result.stdout)["requests"]]
    assert [b.get("person_generation") for b in bodies] == ["allow_adult", "dont_allow"]
    assert [b.get("custom_flag") for b in bodies] == [1, 1]
    assert [b["prompt"] for b in bodies] == ["a", "b"]
    bad = _cli(*args, "--model", model, "--field", "person_generation=everyone")
    _no_traceback(bad)
    assert bad.returncode == 2 and "person_generation" in bad.stderr
    veo2 = _cli(*args, "--field", "person_generation=allow_adult")  # not a veo2 field
    assert veo2.returncode == 2 and "not a field of model 'veo2'" in veo2.stderr


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE jobs SET request = '{garbage' WHERE seq = 2",
        "UPDATE jobs SET size = 'lots' WHERE seq = 1",
        "UPDATE jobs SET state = 'exploded' WHERE seq = 3",
        "UPDATE store_meta SET value = 'two' WHERE name = 'schema_version'",
    ],
)
def test_a_corrupt_journal_is_a_one_line_error(
    tmp_path: Path, server: EmulatorServer, sql: str
) -> None:
    """A garbage value in the journal: an error exit, one line naming the journal, no create."""
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(_PROMPTS) + "\n")
    out = tmp_path / "out"
    assert _cli("batch", str(path), "--out", str(out), *_remote(server)).returncode == 0
    conn = sqlite3.connect(out / JOURNAL_NAME)
    with conn:
        conn.execute(sql)
    conn.close()
    result = _cli("batch", str(path), "--out", str(out), *_remote(server))
    _no_traceback(result)
    assert result.returncode in (1, 2)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "damaged" in line and str(out) in line
    assert server.stats()["create_requests"] == 3
