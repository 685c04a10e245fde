"""Tests for veo_async.report (``veo-async report``) and ``Generation._repr_html_``.

The batch folders are made by the real command line (``veo-async batch``) in a subprocess
against a real emulator server with failures injected, or by the journal's own writing API
for states a finished run cannot leave (a crash with creates in flight). The HTML is parsed
with :mod:`html.parser`: one card per input, a player per downloaded video, a reason per
failure, every prompt escaped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest

from veo_async._journal import JOURNAL_NAME, Journal
from veo_async._models import Generation
from veo_async.emulator import EmulatorConfig, EmulatorServer, FaultConfig, sample_video
from veo_async.report import ReportError, load_batch, render_report, write_report
from veo_async.report import _posters as posters_module

HOSTILE = "<script>alert(1)</script>"
PROMPTS = [
    "A red fox trotting through fresh snow at dawn",
    HOSTILE,
    "Quotes \" and ' and an ampersand & <b>bold</b> in a prompt",
    "Clouds rolling over a mountain ridge",
    "A paper boat drifting down a gutter",
    "An astronaut tending a garden on Mars",
    "A steaming cup of coffee by a rainy window",
    "Neon city street at night, wet asphalt",
]


# --------------------------------------------------------------------------- helpers


class _Page(HTMLParser):
    """Collects elements (tag, attributes, and the text inside them) from a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.text: list[str] = []

    _VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "source", "circle", "line"})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "parent_article": None}
        for el in reversed(self._open):
            if el["tag"] == "article":
                element["parent_article"] = el
                break
        self.elements.append(element)
        if tag not in self._VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self._VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for el in self._open:
            el["text"] += data

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, Any]]:
        """Elements of ``tag`` (having class ``cls``)."""
        return [
            e
            for e in self.elements
            if e["tag"] == tag and (cls is None or cls in (e["attrs"].get("class") or "").split())
        ]

    def inside(self, article: dict[str, Any], tag: str, cls: str | None = None) -> list[Any]:
        """Elements of ``tag`` (class ``cls``) inside ``article``."""
        return [e for e in self.find(tag, cls) if e["parent_article"] is article]


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMLAPI_")}
    env["AIMLAPI_KEY"] = "report-test-key-SECRET"
    return env


def _manifest(folder: Path) -> dict[int, dict[str, Any]]:
    lines = (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return {e["line"]: e for e in map(json.loads, lines)}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veo_async.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )


@pytest.fixture(scope="module")
def batch_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder made by `veo-async batch` over real sockets, with some generations failing."""
    root = tmp_path_factory.mktemp("report")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = root / "batch"
    config = EmulatorConfig(time_scale=0.01, seed=3, faults=FaultConfig(job_error=0.4))
    with EmulatorServer(config) as server:
        done = _cli(
            "batch",
            str(prompts),
            "--out",
            str(out),
            "--base-url",
            server.base_url,
            "--time-scale",
            "0.01",
            "--progress-interval",
            "0.5",
        )
    assert done.returncode in (0, 1), done.stderr
    states = {e["state"] for e in _manifest(out).values()}
    assert states == {"downloaded", "failed"}, states  # the seed gives both outcomes
    return out


@pytest.fixture
def folder(batch_folder: Path, tmp_path: Path) -> Path:
    """A private copy of the batch folder (tests may damage it)."""
    copy = tmp_path / "copy"
    shutil.copytree(batch_folder, copy)
    return copy


# --------------------------------------------------------------------------- structure


def test_one_card_per_input_players_for_videos_reasons_for_failures(folder: Path) -> None:
    """Every input has one card; downloaded ones a player on their file, failed ones a reason."""
    manifest = _manifest(folder)
    page = _parse(render_report(folder))
    cards = page.find("article", "job")
    assert sorted(int(c["attrs"]["data-line"]) for c in cards) == sorted(manifest)
    for card in cards:
        entry = manifest[int(card["attrs"]["data-line"])]
        videos = page.inside(card, "video")
        reasons = page.inside(card, "p", "reason")
        if entry["state"] == "downloaded":
            assert len(videos) == 1
            src = videos[0]["attrs"]["src"]
            assert unquote(src) == entry["file"] and not src.startswith(("/", "http"))
            assert (folder / unquote(src)).read_bytes() == sample_video()
            assert videos[0]["attrs"]["poster"].startswith("data:image/jpeg;base64,")
            assert not reasons
        else:
            assert entry["state"] == "failed"
            assert not videos
            assert len(reasons) == 1 and entry["error"] in reasons[0]["text"]
        prompt = page.inside(card, "p", "prompt")[0]["text"]
        assert prompt == entry["request"]["prompt"]


def test_prompts_are_escaped_and_the_page_runs_no_script(folder: Path) -> None:
    """A prompt `<script>alert(1)</script>` is text, not markup; the page has no script."""
    raw = render_report(folder)
    page = _parse(raw)
    assert not page.find("script")
    assert "<script>" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert not [b for b in page.find("b") if b["parent_article"]]  # <b>bold</b> stayed text
    assert HOSTILE in "".join(page.text)
    metas = page.find("meta")
    csp = [m for m in metas if m["attrs"].get("http-equiv") == "Content-Security-Policy"]
    assert "script-src 'none'" in csp[0]["attrs"]["content"]


def test_no_external_requests(folder: Path) -> None:
    """Nothing on the page loads from elsewhere: no http(s) src/href/url() at all."""
    raw = render_report(folder)
    page = _parse(raw)
    for el in page.elements:
        for name in ("src", "href", "poster", "srcset"):
            value = el["attrs"].get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (el["tag"], name, value)
    assert "url(" not in raw and "@import" not in raw


def test_totals_and_timeline(folder: Path) -> None:
    """Totals count inputs and credits as the manifest says; the timeline has a row per input."""
    manifest = _manifest(folder)
    page = _parse(render_report(folder))
    totals = {e["attrs"]["id"]: e["text"] for e in page.find("div", "total")}
    assert totals["t-inputs"].startswith(str(len(manifest)))
    downloaded = sum(1 for e in manifest.values() if e["state"] == "downloaded")
    assert totals["t-done"].startswith(str(downloaded))
    credits = sum(e["credits"] or 0 for e in manifest.values())
    assert totals["t-credits"].startswith(f"{int(credits):,}")
    assert totals["t-creates"].startswith("1.00")
    rows = page.find("g", "tl-row")
    assert sorted(int(r["attrs"]["data-line"]) for r in rows) == sorted(manifest)
    assert len(page.find("rect", "seg-dl")) == downloaded
    assert len(page.find("circle", "noticed")) == len(manifest)


def test_the_key_is_nowhere(folder: Path) -> None:
    """The API key used for the batch appears neither in the page nor in the folder."""
    page = render_report(folder)
    assert "SECRET" not in page
    for path in folder.iterdir():
        assert b"report-test-key" not in path.read_bytes()


def test_write_report_defaults_to_the_folder_and_creates_no_side_files(folder: Path) -> None:
    """report.html lands in the folder; reading the journal leaves no -wal/-shm behind."""
    before = {p.name for p in folder.iterdir()}
    path = write_report(folder)
    assert path == folder / "report.html"
    assert {p.name for p in folder.iterdir()} == before | {"report.html"}


def test_output_elsewhere_links_videos_relative_to_the_page(folder: Path, tmp_path: Path) -> None:
    """With -o in another folder, video links still resolve from the page's folder."""
    path = write_report(folder, tmp_path / "site" / "index.html", posters=False)
    page = _parse(path.read_text(encoding="utf-8"))
    videos = page.find("video")
    assert videos
    for video in videos:
        target = (path.parent / unquote(video["attrs"]["src"])).resolve()
        assert target.is_file() and target.parent == folder.resolve()


# --------------------------------------------------------------------------- damaged folders


def test_missing_video_file_is_reported_not_fatal(folder: Path) -> None:
    """A deleted video leaves its card without a player and a note that says which."""
    manifest = _manifest(folder)
    line, entry = next((k, e) for k, e in manifest.items() if e["state"] == "downloaded")
    (folder / entry["file"]).unlink()
    page = _parse(render_report(folder))
    card = next(c for c in page.find("article", "job") if c["attrs"]["data-line"] == str(line))
    assert not page.inside(card, "video")
    assert "missing" in page.inside(card, "p", "reason")[0]["text"]
    notes = " ".join(li["text"] for li in page.find("li"))
    assert "missing" in notes and str(line) in notes


def test_missing_manifest_reads_the_journal(folder: Path) -> None:
    """Without manifest.jsonl (a crashed run) the journal still gives every input."""
    count = len(_manifest(folder))
    (folder / "manifest.jsonl").unlink()
    report = load_batch(folder)
    assert report.origin == "journal" and len(report.jobs) == count
    assert any("manifest" in note for note in report.notes)


def test_manifest_only_folder(folder: Path) -> None:
    """Without the journal the manifest is read (no timeline); bad lines are counted, not fatal."""
    manifest = _manifest(folder)
    (folder / JOURNAL_NAME).unlink()
    with open(folder / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    page = _parse(render_report(folder))
    assert len(page.find("article", "job")) == len(manifest)
    downloaded = sum(1 for e in manifest.values() if e["state"] == "downloaded")
    assert len(page.find("video")) == downloaded
    notes = " ".join(li["text"] for li in page.find("li"))
    assert "1 line(s)" in notes
    assert not page.find("svg")


def test_manifest_file_names_cannot_leave_the_folder(tmp_path: Path) -> None:
    """A manifest naming ../../etc/passwd gets no player: file names are data, kept inside."""
    (tmp_path / "secret.mp4").write_bytes(b"x")
    folder = tmp_path / "b"
    folder.mkdir()
    entry = {"line": 1, "request": {"prompt": "p"}, "state": "downloaded", "file": "../secret.mp4"}
    (folder / "manifest.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    page = _parse(render_report(folder))
    assert not page.find("video")
    assert "secret.mp4" not in render_report(folder)


def test_a_folder_without_a_batch_is_an_error(tmp_path: Path) -> None:
    """No journal and no manifest: ReportError naming the command that makes one."""
    with pytest.raises(ReportError, match="veo-async batch"):
        load_batch(tmp_path)
    with pytest.raises(ReportError, match="not a folder"):
        load_batch(tmp_path / "nope")
    assert not (tmp_path / JOURNAL_NAME).exists()  # reading never creates a journal


def test_crashed_run_with_creates_in_flight(tmp_path: Path) -> None:
    """A run that died mid-batch (inputs pending, submitting, submitted) still reports,
    while another process holds the journal's lock."""

    async def crashed_run() -> str:
        journal = await Journal.open(tmp_path)
        try:
            k1, k2, k3, _ = await journal.match_inputs(
                (n, {"model": "veo2", "prompt": f"prompt {n}", "duration": 6}, f"h{n}")
                for n in (1, 2, 3, 4)
            )
            await journal.record_intent(k1)
            await journal.record_submitted(k1, "gen-1", "queued")
            await journal.record_intent(k2)
            await journal.record_intent(k3)
            await journal.record_refused(k3, "429 Too Many Requests")
            # The journal is still open (and locked), as in a running or killed batch.
            return render_report(tmp_path, posters=False)
        finally:
            await journal.close()

    page = _parse(anyio.run(crashed_run))
    cards = {c["attrs"]["data-line"]: c for c in page.find("article", "job")}
    assert set(cards) == {"1", "2", "3", "4"}
    assert cards["2"]["attrs"]["data-state"] == "submitting"
    assert "429" in page.inside(cards["3"], "p", "reason")[0]["text"]
    assert "not submitted" in page.inside(cards["4"], "p", "reason")[0]["text"]
    notes = " ".join(li["text"] for li in page.find("li"))
    assert "being submitted when the run stopped" in notes
    totals = {e["attrs"]["id"]: e["text"] for e in page.find("div", "total")}
    # lines 3 and 4 are not charged: 2 x veo2 6 s from the price table
    assert totals["t-estimate"].startswith("288,000")
    assert len(page.find("g", "tl-row")) == 3  # line 4 was never sent


def test_status_and_poll_events_are_used_when_recorded(tmp_path: Path) -> None:
    """A journal whose events carry statuses and poll counts gets a started mark and polls."""

    async def submit_one() -> None:
        async with await Journal.open(tmp_path) as journal:
            (key,) = await journal.match_inputs([(1, {"prompt": "p"}, "h")])
            await journal.record_intent(key)
            await journal.record_submitted(key, "g", "queued")

    anyio.run(submit_one)
    conn = sqlite3.connect(tmp_path / JOURNAL_NAME)
    with conn:
        conn.execute(
            "INSERT INTO events (batch, at, key, event, detail) "
            "VALUES ('cli', ?, 'h', 'status', ?)",
            (2_000_000_000.0, json.dumps({"status": "generating", "polls": 3})),
        )
    conn.close()
    report = load_batch(tmp_path)
    assert report.jobs[0].started_at == 2_000_000_000.0
    assert report.jobs[0].polls == 3 and report.polls_per_job == 3


def test_posters_skipped_with_a_visible_note(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without imageio-ffmpeg the players stay, posters go, and the page says why."""
    monkeypatch.setattr(
        posters_module,
        "ffmpeg_executable",
        lambda: (None, "posters skipped: imageio-ffmpeg is not installed"),
    )
    import veo_async.report as report_pkg

    monkeypatch.setattr(report_pkg, "ffmpeg_executable", posters_module.ffmpeg_executable)
    page = _parse(render_report(folder))
    videos = page.find("video")
    assert videos and all("poster" not in v["attrs"] for v in videos)
    assert "imageio-ffmpeg is not installed" in " ".join(li["text"] for li in page.find("li"))


def test_no_posters_on_request(folder: Path) -> None:
    """posters=False: players without posters that load their first frame, and a note."""
    page = _parse(render_report(folder, posters=False))
    videos = page.find("video")
    assert videos and all("poster" not in v["attrs"] for v in videos)
    assert all(v["attrs"]["preload"] == "metadata" for v in videos)
    assert "--no-posters" in " ".join(li["text"] for li in page.find("li"))


def test_posters_are_capped_with_a_note(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_POSTERS videos the rest get no embedded poster, and the page says so."""
    from veo_async.report import _html

    monkeypatch.setattr(_html, "MAX_POSTERS", 1)
    page = _parse(render_report(folder))
    videos = page.find("video")
    if len(videos) < 2 or posters_module.ffmpeg_executable()[0] is None:
        pytest.skip("needs two videos and ffmpeg")
    with_poster = [v for v in videos if "poster" in v["attrs"]]
    assert len(with_poster) == 1 and with_poster[0]["attrs"]["preload"] == "none"
    assert "posters for the first 1 videos only" in " ".join(li["text"] for li in page.find("li"))


def test_poster_of_a_broken_video_is_skipped(tmp_path: Path) -> None:
    """ffmpeg failing on a file gives no poster and counts it; a real MP4 gives a JPEG."""
    exe, why = posters_module.ffmpeg_executable()
    if exe is None:
        pytest.skip(why or "no ffmpeg")
    maker = posters_module.PosterMaker(exe)
    good = tmp_path / "ok.mp4"
    good.write_bytes(sample_video())
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    poster = maker.poster(good)
    assert poster is not None and poster.startswith("data:image/jpeg;base64,/9j/")
    assert maker.poster(bad) is None and maker.failures == 1


# --------------------------------------------------------------------------- command line


def test_cli_report_writes_the_page(folder: Path) -> None:
    """`veo-async report DIR` prints the page's path and exits 0; no key needed."""
    env_free = _cli("report", str(folder), "--no-posters")
    assert env_free.returncode == 0, env_free.stderr
    assert env_free.stdout.strip() == str(folder / "report.html")
    page = _parse((folder / "report.html").read_text(encoding="utf-8"))
    assert len(page.find("article", "job")) == len(_manifest(folder))


def test_cli_report_on_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    """An empty folder exits 2 with a message, no traceback, and writes nothing."""
    done = _cli("report", str(tmp_path))
    assert done.returncode == 2
    assert "holds no batch" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- Jupyter


def test_generation_repr_html_completed_shows_a_player() -> None:
    """A completed generation renders a <video> on its URL and a status table, escaped."""
    gen = Generation.model_validate(
        {
            "id": "g<1>",
            "status": "completed",
            "video": {"url": 'https://cdn.example/a.mp4?x="1"&y=2'},
            "meta": {"usage": {"credits_used": 1_008_000}},
        }
    )
    page = _parse(gen._repr_html_())
    videos = page.find("video")
    assert len(videos) == 1 and videos[0]["attrs"]["src"] == 'https://cdn.example/a.mp4?x="1"&y=2'
    text = "".join(page.text)
    assert "g<1>" in text and "1,008,000" in text and "completed" in text
    assert "<1>" not in gen._repr_html_()


def test_generation_repr_html_running_and_failed_have_no_player() -> None:
    """Queued or failed generations show a table only; a hostile error stays text."""
    queued = Generation.model_validate({"id": "g", "status": "queued"})
    assert not _parse(queued._repr_html_()).find("video")
    failed = Generation.model_validate({"id": "g", "status": "error", "error": HOSTILE})
    raw = failed._repr_html_()
    page = _parse(raw)
    assert not page.find("video") and not page.find("script")
    assert HOSTILE in "".join(page.text)


def test_generation_repr_html_refuses_non_http_urls() -> None:
    """A javascript: or data: URL is shown as text, never used as a video source."""
    gen = Generation.model_validate(
        {"id": "g", "status": "completed", "video": {"url": "javascript:alert(1)"}}
    )
    page = _parse(gen._repr_html_())
    assert not page.find("video")
    assert "javascript:alert(1)" in "".join(page.text)
