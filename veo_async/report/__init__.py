"""A batch you can look at: one self-contained HTML page for a ``veo-async batch`` folder.

``write_report(folder)`` reads the folder's journal (read-only, without its lock; else its
``manifest.jsonl``) and writes ``report.html`` next to the videos: per input its prompt,
status, a poster frame and a ``<video>`` player for downloaded videos, failures with their
reasons, totals (credits, wall time, requests per job) and a timeline. The page has inline
CSS, no script and makes no external request; open it from the folder. Poster frames need
the ``imageio-ffmpeg`` wheel (``pip install 'veo-async[report]'``); without it the page says
posters were skipped. The command line is ``veo-async report FOLDER``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._data import BatchReport, ReportError, ReportJob, load_batch
from ._html import render_html
from ._posters import PosterMaker, ffmpeg_executable

__all__ = [
    "REPORT_NAME",
    "BatchReport",
    "ReportError",
    "ReportJob",
    "load_batch",
    "render_report",
    "write_report",
]

REPORT_NAME = "report.html"
"""The default file name, written in the batch folder."""


def render_report(
    folder: str | os.PathLike[str],
    *,
    page_dir: str | os.PathLike[str] | None = None,
    posters: bool = True,
) -> str:
    """The report page for the batch in ``folder`` as a string.

    Video links are relative to ``page_dir`` (default: the batch folder). ``posters=False``
    skips the poster frames (faster for very large batches).
    """
    report = load_batch(folder)
    if posters:
        exe, reason = ffmpeg_executable()
        maker = PosterMaker(exe, reason=reason)
    else:
        maker = PosterMaker(None, reason="posters skipped on request (--no-posters)")
    where = Path(page_dir) if page_dir is not None else report.folder
    return render_html(report, page_dir=where, posters=maker)


def write_report(
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    posters: bool = True,
) -> Path:
    """Write the report page for the batch in ``folder``; returns its path.

    ``output`` defaults to ``report.html`` in the folder; a folder as ``output`` gets
    ``report.html`` inside it. Written atomically (temporary file, then rename). Raises
    :class:`ReportError` when ``folder`` holds no batch.
    """
    root = Path(folder)
    target = Path(output) if output is not None else root / REPORT_NAME
    if target.is_dir():
        target = target / REPORT_NAME
    page = render_report(root, page_dir=target.parent, posters=posters)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
