"""The batch report in a real headless Chromium: the players load the videos, the timeline
draws, no script runs from the page, and a screenshot is taken.

Skipped when no Chromium binary is on the PATH (``apt-get install chromium`` provides one).
The screenshot goes to the test's temporary folder; with ``VEO_ASYNC_UPDATE_SCREENSHOTS=1``
it is also copied to ``docs/img/report.png``, the picture ``docs/report.md`` shows.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from veo_async.emulator import EmulatorConfig, EmulatorServer, FaultConfig
from veo_async.report import write_report

pytestmark = pytest.mark.slow

DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "img" / "report.png"

PROMPTS = [
    "A red fox trotting through fresh snow at dawn, soft golden light",
    "Time-lapse of clouds rolling over a mountain ridge, dramatic shadows",
    "A paper boat drifting down a rain-filled street gutter, close-up",
    "<script>alert(1)</script> (a hostile prompt, shown as text)",
    "Slow aerial shot over a turquoise lagoon with a coral reef",
    "A steaming cup of coffee on a wooden table by a window, rain on the glass",
    "A hummingbird hovering at a red flower, slow motion",
    "Neon-lit city street at night, reflections on wet asphalt",
]

# Loads the report in an iframe (same folder, file access allowed), waits until every
# <video> has its metadata (or 8 s), and writes what it measured into the DOM for
# --dump-dom to return. The report itself runs no script: this harness is the test's.
_HARNESS = """<!doctype html><html><body>
<iframe id="f" src="report.html" style="width:1280px;height:3000px"></iframe>
<script>
const f = document.getElementById('f');
f.addEventListener('load', () => {
  const d = f.contentDocument;
  const vids = [...d.querySelectorAll('video')];
  vids.forEach(v => { v.preload = 'metadata'; v.load(); });
  const t0 = Date.now();
  const check = () => {
    const ready = vids.filter(v => v.readyState >= 1).length;
    if (ready < vids.length && Date.now() - t0 < 8000) { setTimeout(check, 100); return; }
    const svg = d.getElementById('timeline');
    const rects = [...d.querySelectorAll('#timeline rect')];
    const cards = [...d.querySelectorAll('article.job')];
    const out = {
      videos: vids.length, ready, durations: vids.map(v => v.duration),
      widths: vids.map(v => v.getBoundingClientRect().width),
      svgWidth: svg ? svg.getBoundingClientRect().width : 0,
      rects: rects.length,
      drawn: rects.filter(r => r.getBoundingClientRect().width > 0).length,
      cards: cards.length,
      scripts: d.querySelectorAll('script').length,
      alerted: window.__alerted || false,
      prompts: cards.map(c => c.querySelector('.prompt').textContent),
    };
    const pre = document.createElement('pre');
    pre.id = 'result';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  };
  check();
});
</script></body></html>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(exe: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary, or skip."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium)")
    return exe


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a batch run by the real CLI over sockets, some generations failing."""
    root = tmp_path_factory.mktemp("browser")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = root / "demo-batch"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMLAPI_")}
    env["AIMLAPI_KEY"] = "browser-test-key"
    config = EmulatorConfig(time_scale=0.01, seed=3, faults=FaultConfig(job_error=0.25))
    with EmulatorServer(config) as server:
        done = subprocess.run(
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
                "0.01",
                "--concurrency",
                "4",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    assert done.returncode in (0, 1), done.stderr
    return write_report(out)


def test_players_load_and_timeline_draws_in_chromium(chromium: str, report_page: Path) -> None:
    """Every <video> reaches loaded metadata (a 2 s MP4), the SVG timeline draws every bar,
    the hostile prompt is text, and no script exists in the page."""
    folder = report_page.parent
    manifest = [
        json.loads(line)
        for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    downloaded = sum(1 for e in manifest if e["state"] == "downloaded")
    assert downloaded >= 1
    harness = folder / "_harness.html"
    harness.write_text(_HARNESS, encoding="utf-8")
    try:
        done = _run(
            chromium,
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
            "--dump-dom",
            harness.as_uri(),
        )
    finally:
        harness.unlink()
    match = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert match, done.stderr[-2000:]
    result = json.loads(html.unescape(match.group(1)))
    assert result["cards"] == len(manifest)
    assert result["videos"] == downloaded
    assert result["ready"] == downloaded, result
    assert all(abs(d - 2.0) < 0.1 for d in result["durations"]), result["durations"]
    assert all(w > 100 for w in result["widths"])
    assert result["svgWidth"] > 600
    assert result["rects"] >= len(manifest) and result["drawn"] == result["rects"]
    assert result["scripts"] == 0
    assert any("<script>alert(1)</script>" in p for p in result["prompts"])


def test_screenshot(chromium: str, report_page: Path, tmp_path: Path) -> None:
    """A full-width screenshot renders (a real PNG of the window size, not blank)."""
    shot = tmp_path / "report.png"
    done = _run(
        chromium,
        "--window-size=1280,1500",
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
        report_page.as_uri(),
    )
    assert shot.is_file(), done.stderr[-2000:]
    assert _png_size(shot) == (1280, 1500)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
    if os.environ.get("VEO_ASYNC_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
