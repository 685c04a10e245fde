"""Render a :class:`BatchReport` as one self-contained HTML page.

Inline CSS, no script, no external request: videos are relative links to the files in the
batch folder and posters are ``data:`` URIs. Every string that came from the batch (prompts,
errors, ids, file names, notes) goes through :func:`html.escape`; a Content-Security-Policy
that allows no script at all is a second line of defence.

The page, top to bottom: a header (:func:`_head`), the notes, the totals (:func:`_totals`),
the timeline (``_timeline.py``) and one card per input (``_cards.py``).
"""

from __future__ import annotations

from pathlib import Path

from .._pricing import format_credits
from ._cards import card, video_href
from ._data import BatchReport, ReportJob
from ._format import esc, format_duration, utc
from ._posters import PosterMaker
from ._timeline import TIMELINE_MAX_ROWS, timeline

__all__ = ["MAX_POSTERS", "TIMELINE_MAX_ROWS", "render_html"]

MAX_POSTERS = 1000
"""Posters are embedded for at most this many videos (each is about 10 KB of base64)."""

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


def render_html(report: BatchReport, *, page_dir: Path, posters: PosterMaker) -> str:
    """The report page for ``report``, with video links relative to ``page_dir``."""
    jobs = report.jobs
    kinds = {k: sum(1 for j in jobs if j.kind == k) for k in ("done", "ready", "failed", "open")}
    hrefs = {id(job): video_href(job, page_dir, report.folder) for job in jobs}
    playable = [job for job in jobs if hrefs[id(job)] is not None]
    poster_of = _posters_for(playable, report.folder, posters)
    cards = [card(job, hrefs[id(job)], poster_of.get(id(job))) for job in jobs]
    notes = [*report.notes, *_poster_notes(posters, len(playable))]
    parts = [_head(report)]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append(_totals(report, kinds, report.counts()))
    parts.append("<h2>Timeline</h2>")
    parts.append(timeline(report))
    parts.append(f"<h2>Inputs ({len(jobs)})</h2>")
    parts.append('<section class="jobs">' + "".join(cards) + "</section>")
    parts.append(
        "<footer>Made by <code>veo-async report</code>. Credits are the server's figures "
        "(<code>meta.usage.credits_used</code>); estimates use the SDK's price table, which "
        "may differ from current prices.</footer></main></body></html>"
    )
    return "\n".join(parts) + "\n"


def _posters_for(
    playable: list[ReportJob], folder: Path, posters: PosterMaker
) -> dict[int, str | None]:
    """Posters of the first :data:`MAX_POSTERS` playable videos, by ``id(job)``."""
    wanted = playable[:MAX_POSTERS]
    made = posters.many([folder / str(job.file) for job in wanted])
    return {id(job): poster for job, poster in zip(wanted, made, strict=True)}


def _poster_notes(posters: PosterMaker, playable: int) -> list[str]:
    """Why some or all videos have no poster."""
    notes = []
    if playable and posters.exe is None and posters.reason:
        notes.append(posters.reason)
    if posters.failures:
        notes.append(f"{posters.failures} video(s) have no poster: ffmpeg could not read them")
    if posters.exe is not None and playable > MAX_POSTERS:
        notes.append(
            f"posters for the first {MAX_POSTERS} videos only (of {playable}), "
            "to keep the page small; the players of the others show their first frame"
        )
    return notes


def _head(report: BatchReport) -> str:
    """The document head, the title and the line about where the batch came from."""
    title = f"Batch report: {report.folder.name or report.folder}"
    facts = (
        f"folder {report.folder}",
        f"inputs from {report.source}" if report.source else None,
        f"made on {report.target}" if report.target else None,
        f"read from the {report.origin}",
        f"report made {utc(report.made_at)}",
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>",
            f"<h1>{esc(title)}</h1>",
            '<p class="sub">' + " · ".join(esc(x) for x in facts if x) + "</p>",
        ]
    )


def _totals(report: BatchReport, kinds: dict[str, int], counts: dict[str, int]) -> str:
    """The figures at the top (inputs, videos, failures, credits, time) and the state chips."""
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
        f'<div class="total" id="{cid}"><b>{esc(value)}</b><span>{esc(label)}</span></div>'
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
        f'<span class="chip {kind_of.get(state, "k-open")}">{esc(state)}: {n}</span>'
        for state, n in counts.items()
    )
    return f'<section class="totals">{cells}</section><div class="chips">{chips}</div>'
