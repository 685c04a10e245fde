"""What ``veo-async batch`` shows: the progress line or bar, and the closing summary.

Both name failures with the same words from the same counters (:meth:`RunStats.outcome_fields`:
``failed``, ``uncertain``, ``refused``, ``still running``, ``download failed``), so the last
progress line and the summary never disagree on what failed.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._journal import CLI_BATCH, JOURNAL_NAME, JournalRow, JournalState
from .._pricing import format_credits
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, echo_err
from ._run import MANIFEST_NAME, RunStats

__all__ = ["Display", "Summary", "summarize"]

#: At most this many not-done inputs are listed one by one; the rest are counted.
NOT_DONE_SHOWN = 20

_REASONS = {
    JournalState.PENDING: "not submitted yet",
    JournalState.SUBMITTING: "create in flight when the run stopped",
    JournalState.SUBMITTED: "still generating; rerun to resume",
    JournalState.COMPLETED: "completed but not downloaded yet; rerun to download",
    JournalState.UNCERTAIN: "create outcome unknown (not resubmitted; "
    "--resubmit-uncertain submits it again and may pay twice)",
    JournalState.REFUSED: "the create was refused (nothing was charged)",
    JournalState.FAILED: "the generation failed",
}


class Display:
    """Progress on stderr: a rich bar on a terminal, plain periodic lines otherwise."""

    def __init__(self, stats: RunStats, total: int, *, live: bool, interval: float) -> None:
        self.stats = stats
        self.total = total
        self.live = live
        self.interval = interval
        self.started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._last_line: str | None = None

    def _fields(self) -> str:
        c, s = self.stats.counts, self.stats
        return (
            f"submitted {c.submitted}, running {c.running}, done {c.done}, "
            f"downloaded {s.downloaded}, {s.outcome_fields()}"
        )

    def __enter__(self) -> Display:
        if self.live and self.total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}", markup=False),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True, highlight=False),
                refresh_per_second=8,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, counts=self._fields())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.__exit__(None, None, None)
            self._progress = None
        else:
            self.print_line(force=True)

    def refresh(self) -> None:
        """Update the bar from the latest counters."""
        if self._progress is not None:
            c = self.stats.counts
            self._progress.update(self._task, completed=c.done + c.failed, counts=self._fields())

    def print_line(self, *, force: bool = False) -> None:
        """One plain progress line (when something changed, or ``force``)."""
        if self._progress is not None or not self.total:
            return
        line = self._fields()
        if force or line != self._last_line:
            self._last_line = line
            elapsed = time.monotonic() - self.started
            c = self.stats.counts
            echo_err(f"[{elapsed:7.1f}s] {c.done + c.failed}/{self.total} finished: {line}")

    async def run(self) -> None:
        """Refresh periodically until cancelled."""
        while True:
            if self._progress is not None:
                await anyio.sleep(0.25)
                self.refresh()
            else:
                await anyio.sleep(self.interval)
                self.print_line()


@dataclass
class Summary:
    """The end of a run: the exit code, the ``--json`` document and the lines for stderr."""

    code: int
    doc: dict[str, Any]
    lines: list[str] = field(default_factory=list)


def _problem(row: JournalRow) -> dict[str, Any]:
    return {
        "line": row.line,
        "state": row.state.value,
        "generation_id": row.generation_id,
        "reason": _REASONS[row.state],
        "error": row.error,
    }


def _exit_code(stats: RunStats, problems: list[dict[str, Any]]) -> int:
    if stats.interrupted or stats.hard_stop:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if problems else EXIT_OK


def _problem_lines(source: str, problems: list[dict[str, Any]]) -> list[str]:
    """The not-done list, capped at :data:`NOT_DONE_SHOWN` with a count of the rest."""
    if not problems:
        return []
    lines = [f"not done ({len(problems)}):"]
    for p in problems[:NOT_DONE_SHOWN]:
        gid = f" [{p['generation_id']}]" if p["generation_id"] else ""
        err = f": {p['error']}" if p["error"] and p["state"] != "pending" else ""
        lines.append(f"  {source}:{p['line']}{gid} {p['reason']}{err}")
    hidden = len(problems) - NOT_DONE_SHOWN
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (every input is in the manifest)")
    return lines


def _advice(code: int, problems: list[dict[str, Any]], command: str) -> list[str]:
    """What to run next: resume, and --retry-failed when generations failed."""
    states = {p["state"] for p in problems}
    if code == EXIT_INTERRUPTED:
        return [f"Interrupted; the journal is consistent. Resume with:\n    {command}"]
    lines = []
    if states & {"pending", "submitted", "completed"}:
        lines.append(f"Rerun the same command to resume:\n    {command}")
    if "failed" in states:
        argv = shlex.split(command)
        retry = command if "--retry-failed" in argv else f"{command} --retry-failed"
        lines.append(f"To submit the failed generations again (pays again):\n    {retry}")
    return lines


def journal_store_url(out: Path) -> str:
    """The journal of ``out`` as a store URL (``sqlite:///abs/OUT/.veo-async-journal.sqlite3``):
    with batch id ``cli`` it is read by ``veo-async status --store`` and resumed by
    ``client.batch(inputs, store=url, store_options=StoreOptions(batch_id="cli"))``."""
    return "sqlite://" + str((out / JOURNAL_NAME).resolve())


def summarize(
    rows: list[JournalRow],
    *,
    source: str,
    out: Path,
    resumed: bool,
    notes: list[str],
    stats: RunStats,
    command: str,
) -> Summary:
    """The summary of a run over the journal rows of this run's inputs."""
    states = Counter(r.state.value for r in rows)
    credits = sum(r.credits or 0 for r in rows)
    problems = [_problem(r) for r in rows if r.state is not JournalState.DOWNLOADED]
    code = _exit_code(stats, problems)
    store = journal_store_url(out)
    doc: dict[str, Any] = {
        "source": source,
        "out": str(out),
        "manifest": str(out / MANIFEST_NAME),
        "store": {"url": store, "batch_id": CLI_BATCH},
        "inputs": len(rows),
        "states": dict(sorted(states.items())),
        "downloaded": states.get("downloaded", 0),
        "credits": credits,
        "this_run": {
            "submitted": stats.submitted,
            "completed": stats.completed,
            "failed": stats.failed,
            "uncertain": stats.ended[JournalState.UNCERTAIN.value],
            "refused": stats.ended[JournalState.REFUSED.value],
            "still_running": stats.ended[JournalState.SUBMITTED.value],
            "downloaded": stats.downloaded,
            "download_failed": stats.download_failed,
        },
        "resumed": resumed,
        "interrupted": stats.interrupted,
        "stop_reason": stats.stop_reason,
        "problems": problems,
        "notes": notes,
        "exit_code": code,
    }
    lines = [
        f"{len(rows)} inputs from {source} -> {out}: {states.get('downloaded', 0)} downloaded"
        + "".join(f", {n} {s}" for s, n in sorted(states.items()) if s != "downloaded")
        + (f"; {format_credits(credits)} credits" if credits else ""),
        f"this run: submitted {stats.submitted}, completed {stats.completed}, "
        f"downloaded {stats.downloaded}, {stats.outcome_fields()}",
    ]
    if stats.stop_reason:
        lines.append(f"submission stopped early: {stats.stop_reason}")
    lines += _problem_lines(source, problems)
    lines.append(f"manifest: {out / MANIFEST_NAME}")
    lines.append(f"journal: veo-async status --store {store} --batch-id {CLI_BATCH}")
    lines += _advice(code, problems, command)
    return Summary(code, doc, lines)
