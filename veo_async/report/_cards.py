"""One card per input: its player (or why there is none), its facts, and why it is not done."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from .._pricing import format_credits
from ._data import ReportJob, job_label
from ._format import esc, format_duration

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


def video_href(job: ReportJob, page_dir: Path, folder: Path) -> str | None:
    """The job's video file as a URL relative to the page."""
    if not job.file or not job.file_present:
        return None
    if page_dir.resolve() == folder.resolve():
        return job.file_href
    relative = os.path.relpath(folder.resolve() / job.file, page_dir.resolve())
    return quote(Path(relative).as_posix())


def card(job: ReportJob, href: str | None, poster: str | None) -> str:
    """The ``<article>`` of one input."""
    label = _STATE_LABEL.get(job.state, job.state)
    prompt = job.prompt or "(no prompt)"
    data_line = "" if job.line is None else str(job.line)
    anchor = f"line-{job.line}" if job.line is not None else f"gone-{esc(job.generation_id or '')}"
    return (
        f'<article class="job k-{job.kind}" id="{anchor}" data-line="{data_line}" '
        f'data-state="{esc(job.state)}">'
        f'<header><span class="line">{esc(job_label(job))}</span><span class="model">'
        f"{esc(job.model)}</span>"
        f'<span class="badge">{esc(label)}</span></header>'
        f'<div class="media">{_media(job, href, poster, label)}</div>'
        f'<div class="body"><p class="prompt">{esc(prompt)}</p>'
        f'<div class="meta">{"".join(_meta(job))}</div>{_reason(job)}</div></article>'
    )


def _media(job: ReportJob, href: str | None, poster: str | None, label: str) -> str:
    """A player for a video on disk, else a line saying why there is none."""
    if href is not None:
        # With a poster nothing loads until play (a page of thousands of videos stays
        # light); without one the browser fetches the metadata to show the first frame.
        poster_attr = f' poster="{esc(poster)}"' if poster else ""
        preload = "none" if poster else "metadata"
        return (
            f'<video controls preload="{preload}" playsinline src="{esc(href)}"{poster_attr}>'
            f'<a href="{esc(href)}">{esc(job.file)}</a></video>'
        )
    if job.kind in ("done", "ready") and job.file:
        why = f"{esc(job.file)} is missing from the folder"
    elif job.kind == "ready":
        why = "completed; not downloaded yet"
    elif job.kind == "failed":
        why = esc(label)
    else:
        why = f"{esc(label)}: no video yet"
    return f'<div class="none">{why}</div>'


def _credits_text(job: ReportJob) -> str:
    """The server's figure, else the price table's estimate, else nothing."""
    if job.credits is not None:
        return f"{format_credits(job.credits)} credits"
    return f"~{format_credits(job.estimate)} credits (estimate)" if job.estimate else ""


def _meta(job: ReportJob) -> list[str]:
    """The facts under the prompt: model and credits, ids, status, file, timings."""
    credits = _credits_text(job)
    meta = [
        f"<div>model <code>{esc(job.model)}</code>{' · ' + esc(credits) if credits else ''}</div>"
    ]
    if job.generation_id:
        meta.append(f"<div>id <code>{esc(job.generation_id)}</code></div>")
    if job.previous_ids:
        meta.append(
            "<div>earlier attempts "
            + ", ".join(f"<code>{esc(i)}</code>" for i in job.previous_ids)
            + "</div>"
        )
    if job.status:
        meta.append(f"<div>last status <code>{esc(job.status)}</code></div>")
    if job.file and job.file_present:
        meta.append(f"<div>file <code>{esc(job.file)}</code></div>")
    timing = _timing_text(job)
    if timing:
        meta.append(f"<div>{esc(timing)}</div>")
    return meta


def _reason(job: ReportJob) -> str:
    """Why an input is not done (its error, or what its state means), if it is not."""
    if job.kind == "done":
        return ""
    why = job.error or _REASON.get(job.state)
    if job.kind == "ready" and job.file and not job.file_present:
        why = f"{job.file} is missing; rerun the batch to download it again"
    return f'<p class="reason">{esc(why)}</p>' if why else ""


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
