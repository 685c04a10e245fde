"""Real sockets: the server, the CDN and its MP4, control endpoints, subprocess and CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.emulator._helpers import UNIVERSAL, VENDOR
from veo_async.emulator import (
    URL_LINE_PREFIX,
    EmulatorConfig,
    EmulatorProcess,
    EmulatorServer,
    build_parser,
    main,
    sample_video,
)
from veo_async.emulator._cli import config_from_args

AUTH = {"Authorization": "Bearer k"}
ROOT = Path(__file__).resolve().parents[2]


def _mp4_boxes(data: bytes) -> list[tuple[str, int]]:
    """Top-level ISO-BMFF boxes as (type, size)."""
    boxes = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        assert size >= 8, (kind, size)
        boxes.append((kind, size))
        offset += size
    assert offset == len(data)
    return boxes


def _wait_completed(client: httpx.Client, path: str, gid: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while True:
        body: dict[str, object] = client.get(path, params={"generation_id": gid}).json()
        if body["status"] == "completed":
            return body
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_sample_video_is_a_small_valid_mp4() -> None:
    """The packaged video is < 50 KB and an ISO-BMFF file: ftyp first, then moov and mdat."""
    data = sample_video()
    assert len(data) < 50_000
    boxes = _mp4_boxes(data)
    assert boxes[0][0] == "ftyp"
    assert {"moov", "mdat"} <= {kind for kind, _ in boxes}


def test_sample_video_decodes() -> None:
    """ffmpeg (from imageio-ffmpeg, when installed) decodes the sample without errors."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    result = subprocess.run(
        [ffmpeg, "-v", "error", "-i", "-", "-f", "null", "-"],
        input=sample_video(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == b""


def test_full_lifecycle_over_sockets(emulator_server: EmulatorServer) -> None:
    """Create, poll to completion and download a real MP4 over TCP, without the key."""
    with httpx.Client(base_url=emulator_server.base_url, headers=AUTH) as client:
        created = client.post(VENDOR, json={"model": "veo2", "prompt": "a real clip"})
        assert created.status_code == 201
        done = _wait_completed(client, VENDOR, created.json()["id"])
    video = done["video"]
    assert isinstance(video, dict)
    url = video["url"]
    assert url.startswith(emulator_server.base_url + "/cdn/generations/")
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content == sample_video() and response.content[4:8] == b"ftyp"
    record = emulator_server.emulator.generation(created.json()["id"])
    assert record is not None and record["downloads"] == 1


def test_cdn_rejects_authorization(emulator_server: EmulatorServer) -> None:
    """The video host answers 403 JSON to any request with Authorization and counts it."""
    with httpx.Client(base_url=emulator_server.base_url, headers=AUTH) as client:
        gid = client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}).json()["id"]
        url = _wait_completed(client, UNIVERSAL, gid)["video"]
        assert isinstance(url, dict)
        leaked = client.get(url["url"])
    assert leaked.status_code == 403
    assert leaked.json()["statusCode"] == 403
    assert emulator_server.emulator.ledger.cdn_requests_with_authorization == 1


def test_cdn_ranges_and_unknown_files(emulator_server: EmulatorServer) -> None:
    """The CDN serves byte ranges (206) and 404s unknown or unfinished videos."""
    with httpx.Client(base_url=emulator_server.base_url, headers=AUTH) as client:
        gid = client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}).json()["id"]
        _wait_completed(client, UNIVERSAL, gid)
    url = emulator_server.url(f"/cdn/generations/{gid}.mp4")
    total = len(sample_video())
    part = httpx.get(url, headers={"Range": "bytes=100-"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-{total - 1}/{total}"
    assert part.content == sample_video()[100:]
    assert httpx.get(url, headers={"Range": f"bytes={total}-"}).status_code == 416
    assert httpx.get(emulator_server.url("/cdn/generations/nope.mp4")).status_code == 404


def test_cdn_on_another_host_name() -> None:
    """With cdn_host the video URLs use another host name (localhost) and still work."""
    config = EmulatorConfig(time_scale=0.001, queue_delay=0.0)
    with (
        EmulatorServer(config, cdn_host="localhost") as server,
        httpx.Client(base_url=server.base_url, headers=AUTH) as client,
    ):
        gid = client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}).json()["id"]
        video = _wait_completed(client, UNIVERSAL, gid)["video"]
        assert isinstance(video, dict)
        assert video["url"].startswith(f"http://localhost:{server.port}/")
        assert httpx.get(video["url"]).status_code == 200


def test_control_endpoints(emulator_server: EmulatorServer) -> None:
    """/_emulator/config, /stats, /restart and /reset work over HTTP."""
    base = emulator_server.base_url
    with httpx.Client(base_url=base) as client:
        patched = client.post("/_emulator/config", json={"api_key": "new", "faults": {}})
        assert patched.status_code == 200 and patched.json()["api_key"] == "new"
        assert client.get("/_emulator/config").json()["api_key"] == "new"
        bad = client.post("/_emulator/config", json={"faults": {"server_error": 3}})
        assert bad.status_code == 400
        headers = {"Authorization": "Bearer new"}
        gid = client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}, headers=headers)
        stats = client.get("/_emulator/stats").json()
        assert stats["generations_created"] == 1 and len(stats["generations"]) == 1
        assert "generations" not in client.get("/_emulator/stats?generations=0").json()
        assert client.post("/_emulator/restart").status_code == 200
        lost = client.get(UNIVERSAL, params={"generation_id": gid.json()["id"]}, headers=headers)
        assert lost.status_code == 404
        assert client.post("/_emulator/reset").status_code == 200
        assert client.get("/_emulator/stats").json()["create_requests"] == 0


@pytest.mark.slow
def test_emulator_process() -> None:
    """EmulatorProcess starts the CLI on a free port, is controlled over HTTP, exits on SIGTERM."""
    config = EmulatorConfig(time_scale=0.001, seed=4)
    with EmulatorProcess(config, args=["--max-concurrent", "3"]) as process:
        assert process.base_url.startswith("http://127.0.0.1:")
        created = httpx.post(
            process.base_url + UNIVERSAL, json={"model": "veo2", "prompt": "p"}, headers=AUTH
        )
        assert created.status_code == 200
        assert process.configure(credits=5)["max_concurrent"] == 3
        assert process.stats()["generations_created"] == 1
        process.restart()
        process.reset()
        assert process.stats(include_generations=False)["create_requests"] == 0
        running = process.process
        assert running is not None
    assert running.returncode == 0


@pytest.mark.slow
def test_cli_exits_cleanly_on_sigint() -> None:
    """The command line prints one URL line and exits 0 on SIGINT."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "veo_async.emulator", "--port", "0", "--seed", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(URL_LINE_PREFIX + "http://127.0.0.1:")
        url = line[len(URL_LINE_PREFIX) :].strip()
        assert httpx.get(url + "/_emulator/health").json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_cli_flags_build_the_config() -> None:
    """Every flag lands in the EmulatorConfig; --fault overrides --fault-rate."""
    args = build_parser().parse_args(
        [
            "--time-scale=0.01",
            "--seed=3",
            "--api-key=K",
            "--rate-limit=5",
            "--max-concurrent=4",
            "--credits=1000",
            "--fault-rate=0.2",
            "--fault",
            "server_error=0.05",
            "--fault",
            "lost-create=0.01",
            "--slow-response-delay=2",
        ]
    )
    config = config_from_args(args)
    assert (config.time_scale, config.seed, config.api_key) == (0.01, 3, "K")
    assert (config.rate_limit, config.max_concurrent, config.credits) == (5.0, 4, 1000)
    assert config.faults.server_error == 0.05 and config.faults.lost_create == 0.01
    assert config.faults.bad_gateway == pytest.approx(0.2 / 9)
    assert config.faults.slow_response_delay == 2.0


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad flags and impossible configs return status 2; --help returns 0."""
    assert main(["--fault", "nonsense=1"]) == 2
    assert main(["--fault", "server_error=0.8", "--fault", "bad_gateway=0.8"]) == 2
    assert main(["--help"]) == 0
    assert "Fault kinds" in capsys.readouterr().out


def test_import_error_names_the_extra() -> None:
    """Without starlette, importing the emulator says pip install 'veo-async[emulator]'."""
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "try:\n    import veo_async.emulator\n"
        "except ImportError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "pip install 'veo-async[emulator]'" in result.stdout
