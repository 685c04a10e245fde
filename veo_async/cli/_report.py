"""``veo-async report FOLDER``: one self-contained HTML page for a batch folder.

Reads the folder's journal read-only (it works while a batch runs there, and on the folder
of a crashed or partial run), or its ``manifest.jsonl`` when there is no journal, and
writes ``report.html`` beside the videos. Nothing is sent to the API; no key is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import EXIT_OK, EXIT_USAGE, echo_err

__all__ = ["report"]


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=True),
    help="Where to write the page (default: FOLDER/report.html).",
)
@click.option(
    "--posters/--no-posters",
    default=True,
    show_default=True,
    help="Poster frames from the videos (needs imageio-ffmpeg, in the report extra).",
)
def report(folder: Path, output: Path | None, posters: bool) -> None:
    """Write an HTML page for the batch in FOLDER: videos, failures, totals and a timeline.

    FOLDER is the --out folder of `veo-async batch`. The page has no script and makes no
    external request; open it in a browser from the folder (its video links are relative).
    """
    from ..report import ReportError, write_report

    try:
        path = write_report(folder, output, posters=posters)
    except ReportError as exc:
        echo_err(f"error: {exc}")
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        echo_err(f"error: cannot write the report: {exc}")
        sys.exit(EXIT_USAGE)
    click.echo(str(path))
    sys.exit(EXIT_OK)
