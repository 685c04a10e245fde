"""The timeline: one SVG row per submitted input, from create to download, on one time axis.

Each row is a list of segments (create, queued, generating, download, failed) between
journal timestamps; the axis ticks are at "nice" steps (1 s, 5 s, 1 min, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._data import BatchReport, ReportJob, job_label
from ._format import esc, format_duration

TIMELINE_MAX_ROWS = 400
"""The timeline draws at most this many jobs (the first by line); the page says so."""

_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
_LEFT, _WIDTH, _ROW_H, _TOP = 56.0, 900.0, 16.0, 22.0

#: (CSS class, from, to, tooltip)
Segment = tuple[str, float, float, str]


def _nice_step(span: float) -> float:
    raw = span / 8
    for step in (*_STEPS, 86400):
        if step >= raw:
            return float(step)
    return float(math.ceil(raw / 86400) * 86400)


def timeline(report: BatchReport) -> str:
    """The timeline section: the SVG and its legend (or a line saying there are no timings)."""
    span = report.span()
    if span is None:
        return (
            '<div class="timeline" id="timeline-empty"><p>No timings recorded '
            "(nothing was submitted yet, or the report was read from the manifest).</p></div>"
        )
    start, end = span
    total = max(end - start, 1e-3)
    shown = [j for j in report.jobs if j.intent_at is not None][:TIMELINE_MAX_ROWS]
    height = _TOP + _ROW_H * len(shown) + 6

    def x(t: float) -> float:
        return _LEFT + (t - start) / total * _WIDTH

    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="Timeline of the batch" viewBox="0 0 {_LEFT + _WIDTH + 10:.0f} {height:.0f}">'
    ]
    out.extend(_axis(total, height, lambda tick: x(start + tick)))
    for i, job in enumerate(shown):
        out.extend(_row(job, _TOP + i * _ROW_H, end, x))
    out.append("</svg>")
    return f'<div class="timeline">{"".join(out)}{_legend(report, len(shown))}</div>'


def _axis(total: float, height: float, x_of_tick: Callable[[float], float]) -> list[str]:
    """A vertical line and a label at every step of the axis."""
    step = _nice_step(total)
    lines = []
    for n in range(int(total / step + 1e-9) + 1):
        tick = n * step
        tx = x_of_tick(tick)
        lines.append(
            f'<line class="tl-axis" x1="{tx:.1f}" y1="{_TOP - 4:.1f}" x2="{tx:.1f}" '
            f'y2="{height:.1f}"/><text class="tl-tick" x="{tx:.1f}" y="12" '
            f'text-anchor="middle">{esc(format_duration(tick).replace(".0 s", " s"))}</text>'
        )
    return lines


def _segments(job: ReportJob, end: float) -> list[Segment]:
    """The bars of one input: create, then queued / generating (or failed), then download."""
    assert job.intent_at is not None
    sent = job.intent_at
    got_id = job.submitted_at
    if got_id is None:
        return [("seg-fail", sent, sent, "create sent; no id")]
    segments: list[Segment] = [("seg-create", sent, got_id, "create: sent to id returned")]
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
    return segments


def _row(job: ReportJob, y: float, end: float, x: Callable[[float], float]) -> list[str]:
    """One input's ``<g>``: its label, its bars and the moment it was noticed finished."""
    title = f"{job_label(job)} {job.state}: {job.prompt[:80]}"
    data_line = "" if job.line is None else str(job.line)
    out = [
        f'<g class="tl-row k-{job.kind}" data-line="{data_line}"><title>{esc(title)}</title>'
        f'<text class="tl-label" x="4" y="{y + 10:.1f}">{esc(job_label(job))}</text>'
    ]
    for cls, a, b, what in _segments(job, end):
        w = max(x(b) - x(a), 2.0)
        out.append(
            f'<rect class="{cls}" x="{x(a):.1f}" y="{y + 2:.1f}" width="{w:.1f}" '
            f'height="10" rx="2"><title>{esc(what)}</title></rect>'
        )
    if job.finished_at is not None:
        out.append(
            f'<circle class="noticed" cx="{x(job.finished_at):.1f}" cy="{y + 7:.1f}" r="3">'
            "<title>noticed finished</title></circle>"
        )
    out.append("</g>")
    return out


def _legend(report: BatchReport, shown: int) -> str:
    """What the colours mean, what the bars can and cannot show, and how many rows are drawn."""
    more = ""
    timed = sum(1 for j in report.jobs if j.intent_at is not None)
    if timed > shown:
        more = f" Showing the first {shown} of {timed} submitted inputs."
    started_known = any(j.started_at is not None for j in report.jobs)
    return (
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
        + esc(more)
        + "</p>"
    )
