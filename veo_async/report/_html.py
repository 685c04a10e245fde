"""Render a :class:`BatchReport` as one self-contained HTML page.

Inline CSS, no script, no external request: videos are relative links to the files in the
batch folder and posters are ``data:`` URIs. Every string that came from the batch (prompts,
errors, ids, file names, notes) goes through :func:`html.escape`; a Content-Security-Policy
that allows no script at all is a second line of defence.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from pathlib import Path
from urllib.parse import quote

from .._pricing import format_credits
from ._data import BatchReport, ReportJob, job_label
from ._posters import PosterMaker

__all__ = ["MAX_POSTERS", "TIMELINE_MAX_ROWS", "render_html"]

TIMELINE_MAX_ROWS = 400
"""The timeline draws at most this many jobs (the first by line); the page says so."""

MAX_POSTERS = 1000
"""Posters are embedded for at most this many videos (each is about 10 KB of base64)."""

_STATE_LABEL = {
    "downloaded": "downloaded",
    "completed": "completed, not downloaded",
    "failed": "failed",
    "refused": "refused",
    "uncertain": "uncertain",
    "submitted": "generating",
    "submitting": "create in flight",
    "pending": "not submitted",
}

_REASON = {
    "pending": "not submitted yet",
    "submitting": "the create was in flight when the run stopped",
    "submitted": "still generating when the run stopped; rerun to resume",
    "completed": "completed but not downloaded; rerun to download",
    "uncertain": "the create's outcome is unknown (it may have been billed)",
    "refused": "the create was refused (nothing was charged)",
    "failed": "the generation failed",
}

_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#5d6778;--line:#e1e5ec;
--ok:#1f9d55;--fail:#d64545;--open:#d69e2e;--ready:#3182ce;--create:#805ad5;--wait:#a0aec0;
--gen:#3182ce;--dl:#1f9d55}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--ink)}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:var(--mute);margin:0 0 16px;overflow-wrap:anywhere}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.notes{background:#fffbea;border:1px solid #f6e05e;border-radius:8px;padding:8px 14px 8px 30px;
margin:0 0 16px}
.notes li{margin:2px 0}
.totals{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px}
.total{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.total b{display:block;font-size:20px}.total span{color:var(--mute);font-size:12px}
.chips{margin:10px 0 0}.chip{display:inline-block;border-radius:12px;padding:1px 9px;
margin:0 6px 6px 0;font-size:12px;color:#fff;background:var(--wait)}
.k-done .badge,.chip.k-done{background:var(--ok)}
.k-failed .badge,.chip.k-failed{background:var(--fail)}
.k-open .badge,.chip.k-open{background:var(--open)}
.k-ready .badge,.chip.k-ready{background:var(--ready)}
.timeline{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px;
overflow-x:auto}
.timeline svg{display:block;width:100%;height:auto;min-width:640px}
.legend{color:var(--mute);font-size:12px;margin:8px 0 0}
.legend i{display:inline-block;width:14px;height:8px;border-radius:2px;margin:0 4px 0 12px;
vertical-align:middle}
.seg-create{fill:var(--create)}.seg-wait{fill:var(--wait)}.seg-gen{fill:var(--gen)}
.seg-dl{fill:var(--dl)}.seg-fail{fill:var(--fail)}.noticed{fill:#1d2330}
i.seg-create{background:var(--create)}i.seg-wait{background:var(--wait)}
i.seg-gen{background:var(--gen)}i.seg-dl{background:var(--dl)}i.seg-fail{background:var(--fail)}
i.noticed{background:#1d2330;width:8px;border-radius:4px}
.tl-label{font:10px ui-monospace,monospace;fill:var(--mute)}.tl-axis{stroke:var(--line)}
.tl-tick{font:10px system-ui,sans-serif;fill:var(--mute)}
.jobs{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.job{background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;
display:flex;flex-direction:column}
.job header{display:flex;gap:8px;align-items:center;padding:8px 12px;
border-bottom:1px solid var(--line)}
.job header .line{font-weight:600}.job header .model{color:var(--mute);font-size:12px;
overflow-wrap:anywhere;flex:1}
.badge{border-radius:10px;padding:1px 8px;font-size:11px;color:#fff;background:var(--wait);
white-space:nowrap}
.media{background:#0f1218;aspect-ratio:16/9;display:flex;align-items:center;
justify-content:center;color:#cbd2dc;font-size:13px;text-align:center;padding:0}
.media video{width:100%;height:100%;display:block;background:#000}
.media .none{padding:12px}
.body{padding:10px 12px}
.prompt{margin:0 0 8px;white-space:pre-wrap;overflow-wrap:anywhere}
.meta{margin:0;color:var(--mute);font-size:12px}.meta div{overflow-wrap:anywhere}
.reason{margin:8px 0 0;padding:6px 8px;border-radius:6px;background:#fff5f5;color:#9b2c2c;
font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}
.k-open .reason,.k-ready .reason{background:#fffaf0;color:#7b341e}
footer{color:var(--mute);font-size:12px;margin:28px 0 0}
"""

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "media-src 'self' file: blob:; script-src 'none'; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    moment = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """``"2 h 03 min"``, ``"4 min 12 s"``, ``"8.4 s"``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _href(job: ReportJob, page_dir: Path, folder: Path) -> str | None:
    """The job's video file as a URL relative to the page."""
    if not job.file or not job.file_present:
        return None
    if page_dir.resolve() == folder.resolve():
        return job.file_href
    relative = os.path.relpath(folder.resolve() / job.file, page_dir.resolve())
    return quote(Path(relative).as_posix())


def render_html(report: BatchReport, *, page_dir: Path, posters: PosterMaker) -> str:
    """The report page for ``report``, with video links relative to ``page_dir``."""
    jobs = report.jobs
    counts = report.counts()
    kinds = {k: sum(1 for j in jobs if j.kind == k) for k in ("done", "ready", "failed", "open")}
    hrefs = {id(job): _href(job, page_dir, report.folder) for job in jobs}
    playable = [job for job in jobs if hrefs[id(job)] is not None]
    wanted = playable[:MAX_POSTERS]
    made = posters.many([report.folder / str(job.file) for job in wanted])
    poster_of = {id(job): poster for job, poster in zip(wanted, made, strict=True)}
    cards = [_card(job, hrefs[id(job)], poster_of.get(id(job))) for job in jobs]
    notes = list(report.notes)
    if playable and posters.exe is None and posters.reason:
        notes.append(posters.reason)
    if posters.failures:
        notes.append(f"{posters.failures} video(s) have no poster: ffmpeg could not read them")
    if posters.exe is not None and len(playable) > MAX_POSTERS:
        notes.append(
            f"posters for the first {MAX_POSTERS} videos only (of {len(playable)}), "
            "to keep the page small; the players of the others show their first frame"
        )
    title = f"Batch report: {report.folder.name or report.folder}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        '<p class="sub">'
        + " · ".join(
            _e(x)
            for x in (
                f"folder {report.folder}",
                f"inputs from {report.source}" if report.source else None,
                f"made on {report.target}" if report.target else None,
                f"read from the {report.origin}",
                f"report made {_utc(report.made_at)}",
            )
            if x
        )
        + "</p>",
    ]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append(_totals(report, kinds, counts))
    parts.append("<h2>Timeline</h2>")
    parts.append(_timeline(report))
    parts.append(f"<h2>Inputs ({len(jobs)})</h2>")
    parts.append('<section class="jobs">' + "".join(cards) + "</section>")
    parts.append(
        "<footer>Made by <code>veo-async report</code>. Credits are the server's figures "
        "(<code>meta.usage.credits_used</code>); estimates use the SDK's price table, which "
        "may differ from current prices.</footer></main></body></html>"
    )
    return "\n".join(parts) + "\n"


def _totals(report: BatchReport, kinds: dict[str, int], counts: dict[str, int]) -> str:
    polls = report.polls_per_job
    creates = report.creates_per_job
    items: list[tuple[str, str, str]] = [
        ("t-inputs", str(len(report.jobs)), "inputs"),
        ("t-done", str(kinds["done"]), "videos on disk"),
        ("t-failed", str(kinds["failed"]), "failed, refused or uncertain"),
        ("t-open", str(kinds["open"] + kinds["ready"]), "not finished or not downloaded"),
        ("t-credits", format_credits(report.credits), "credits charged (server figures)"),
        ("t-wall", format_duration(report.wall_seconds), "wall time, first create to last event"),
        (
            "t-creates",
            "-" if creates is None else f"{creates:.2f}",
            "create requests per submitted input",
        ),
        (
            "t-polls",
            "-" if polls is None else f"{polls:.1f}",
            "status requests per input" + (" (not recorded)" if polls is None else ""),
        ),
    ]
    estimate = report.estimated_open_credits
    if any(j.state in ("pending", "refused") for j in report.jobs):
        items.append(
            (
                "t-estimate",
                format_credits(estimate),
                "estimated credits to submit the rest (price table)",
            )
        )
    cells = "".join(
        f'<div class="total" id="{cid}"><b>{_e(value)}</b><span>{_e(label)}</span></div>'
        for cid, value, label in items
    )
    kind_of = {
        "downloaded": "k-done",
        "completed": "k-ready",
        "failed": "k-failed",
        "refused": "k-failed",
        "uncertain": "k-failed",
    }
    chips = "".join(
        f'<span class="chip {kind_of.get(state, "k-open")}">{_e(state)}: {n}</span>'
        for state, n in counts.items()
    )
    return f'<section class="totals">{cells}</section><div class="chips">{chips}</div>'


def _card(job: ReportJob, href: str | None, poster: str | None) -> str:
    label = _STATE_LABEL.get(job.state, job.state)
    if href is not None:
        # With a poster nothing loads until play (a page of thousands of videos stays
        # light); without one the browser fetches the metadata to show the first frame.
        poster_attr = f' poster="{_e(poster)}"' if poster else ""
        preload = "none" if poster else "metadata"
        media = (
            f'<video controls preload="{preload}" playsinline src="{_e(href)}"{poster_attr}>'
            f'<a href="{_e(href)}">{_e(job.file)}</a></video>'
        )
    elif job.kind in ("done", "ready") and job.file:
        media = f'<div class="none">{_e(job.file)} is missing from the folder</div>'
    elif job.kind == "ready":
        media = '<div class="none">completed; not downloaded yet</div>'
    elif job.kind == "failed":
        media = f'<div class="none">{_e(label)}</div>'
    else:
        media = f'<div class="none">{_e(label)}: no video yet</div>'
    credits = (
        f"{format_credits(job.credits)} credits"
        if job.credits is not None
        else (f"~{format_credits(job.estimate)} credits (estimate)" if job.estimate else "")
    )
    meta = [
        f"<div>model <code>{_e(job.model)}</code>{' · ' + _e(credits) if credits else ''}</div>"
    ]
    if job.generation_id:
        meta.append(f"<div>id <code>{_e(job.generation_id)}</code></div>")
    if job.previous_ids:
        meta.append(
            "<div>earlier attempts "
            + ", ".join(f"<code>{_e(i)}</code>" for i in job.previous_ids)
            + "</div>"
        )
    if job.status:
        meta.append(f"<div>last status <code>{_e(job.status)}</code></div>")
    if job.file and job.file_present:
        meta.append(f"<div>file <code>{_e(job.file)}</code></div>")
    timing = _timing_text(job)
    if timing:
        meta.append(f"<div>{_e(timing)}</div>")
    reason = ""
    if job.kind != "done":
        why = job.error or _REASON.get(job.state)
        if job.kind == "ready" and job.file and not job.file_present:
            why = f"{job.file} is missing; rerun the batch to download it again"
        if why:
            reason = f'<p class="reason">{_e(why)}</p>'
    prompt = job.prompt or "(no prompt)"
    data_line = "" if job.line is None else str(job.line)
    anchor = f"line-{job.line}" if job.line is not None else f"gone-{_e(job.generation_id or '')}"
    return (
        f'<article class="job k-{job.kind}" id="{anchor}" data-line="{data_line}" '
        f'data-state="{_e(job.state)}">'
        f'<header><span class="line">{_e(job_label(job))}</span><span class="model">'
        f"{_e(job.model)}</span>"
        f'<span class="badge">{_e(label)}</span></header>'
        f'<div class="media">{media}</div>'
        f'<div class="body"><p class="prompt">{_e(prompt)}</p>'
        f'<div class="meta">{"".join(meta)}</div>{reason}</div></article>'
    )


def _timing_text(job: ReportJob) -> str:
    parts = []
    if job.intent_at is not None and job.submitted_at is not None:
        parts.append(f"create {format_duration(job.submitted_at - job.intent_at)}")
    if job.submitted_at is not None and job.finished_at is not None:
        parts.append(
            f"generation noticed after {format_duration(job.finished_at - job.submitted_at)}"
        )
    if job.finished_at is not None and job.downloaded_at is not None:
        parts.append(f"download {format_duration(job.downloaded_at - job.finished_at)}")
    if job.creates and job.creates > 1:
        parts.append(f"{job.creates} create requests")
    if job.polls is not None:
        parts.append(f"{job.polls} status requests")
    return " · ".join(parts)


# --------------------------------------------------------------------------- timeline


def _nice_step(span: float) -> float:
    raw = span / 8
    for step in (
        0.1,
        0.2,
        0.5,
        1,
        2,
        5,
        10,
        15,
        30,
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        21600,
        86400,
    ):
        if step >= raw:
            return float(step)
    return float(math.ceil(raw / 86400) * 86400)


def _timeline(report: BatchReport) -> str:
    span = report.span()
    if span is None:
        return (
            '<div class="timeline" id="timeline-empty"><p>No timings recorded '
            "(nothing was submitted yet, or the report was read from the manifest).</p></div>"
        )
    start, end = span
    total = max(end - start, 1e-3)
    shown = [j for j in report.jobs if j.intent_at is not None][:TIMELINE_MAX_ROWS]
    left, width, row_h, top = 56.0, 900.0, 16.0, 22.0
    height = top + row_h * len(shown) + 6

    def x(t: float) -> float:
        return left + (t - start) / total * width

    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="Timeline of the batch" viewBox="0 0 {left + width + 10:.0f} {height:.0f}">'
    ]
    step = _nice_step(total)
    for n in range(int(total / step + 1e-9) + 1):
        tick = n * step
        tx = x(start + tick)
        out.append(
            f'<line class="tl-axis" x1="{tx:.1f}" y1="{top - 4:.1f}" x2="{tx:.1f}" '
            f'y2="{height:.1f}"/><text class="tl-tick" x="{tx:.1f}" y="12" '
            f'text-anchor="middle">{_e(format_duration(tick).replace(".0 s", " s"))}</text>'
        )
    for i, job in enumerate(shown):
        y = top + i * row_h
        segments: list[tuple[str, float, float, str]] = []
        assert job.intent_at is not None
        sent = job.intent_at
        got_id = job.submitted_at
        if got_id is not None:
            segments.append(("seg-create", sent, got_id, "create: sent to id returned"))
            end_gen = job.finished_at if job.finished_at is not None else end
            wait_class = "seg-fail" if job.kind == "failed" else "seg-wait"
            if job.started_at is not None and job.started_at < end_gen:
                segments.append((wait_class, got_id, job.started_at, "queued"))
                gen_class = "seg-fail" if job.kind == "failed" else "seg-gen"
                segments.append((gen_class, job.started_at, end_gen, "generating"))
            else:
                label = "queued or generating" if job.finished_at else "still running"
                segments.append((wait_class, got_id, end_gen, label))
            if job.finished_at is not None and job.downloaded_at is not None:
                segments.append(("seg-dl", job.finished_at, job.downloaded_at, "download"))
        else:
            segments.append(("seg-fail", sent, sent, "create sent; no id"))
        title = f"{job_label(job)} {job.state}: {job.prompt[:80]}"
        data_line = "" if job.line is None else str(job.line)
        out.append(
            f'<g class="tl-row k-{job.kind}" data-line="{data_line}"><title>{_e(title)}</title>'
            f'<text class="tl-label" x="4" y="{y + 10:.1f}">{_e(job_label(job))}</text>'
        )
        for cls, a, b, what in segments:
            w = max(x(b) - x(a), 2.0)
            out.append(
                f'<rect class="{cls}" x="{x(a):.1f}" y="{y + 2:.1f}" width="{w:.1f}" '
                f'height="10" rx="2"><title>{_e(what)}</title></rect>'
            )
        if job.finished_at is not None:
            out.append(
                f'<circle class="noticed" cx="{x(job.finished_at):.1f}" cy="{y + 7:.1f}" r="3">'
                "<title>noticed finished</title></circle>"
            )
        out.append("</g>")
    out.append("</svg>")
    more = ""
    timed = sum(1 for j in report.jobs if j.intent_at is not None)
    if timed > len(shown):
        more = f" Showing the first {len(shown)} of {timed} submitted inputs."
    started_known = any(j.started_at is not None for j in report.jobs)
    legend = (
        '<p class="legend"><i class="seg-create"></i>create (sent → id returned)'
        + (
            '<i class="seg-wait"></i>queued<i class="seg-gen"></i>generating'
            if started_known
            else '<i class="seg-wait"></i>queued or generating'
        )
        + '<i class="noticed"></i>noticed finished<i class="seg-dl"></i>download'
        '<i class="seg-fail"></i>failed'
        + "<br>The server does not report when it started or finished a job; the SDK "
        "notices a finished job at its next poll, so the bar ends at that moment."
        + (
            ""
            if started_known
            else " This journal records no status changes, so queued and generating are one bar."
        )
        + _e(more)
        + "</p>"
    )
    return f'<div class="timeline">{"".join(out)}{legend}</div>'
