"""A progress line for library batches (``client.batch(..., progress=True)``).

One line, rewritten in place with a carriage return, at most a few times a second: it works
in a terminal and in a Jupyter notebook (whose output area honours ``\\r``) with no extra
dependency. When the stream is not a terminal or a notebook (a log file, CI), a line is
written only every ``log_every`` seconds instead, so logs are not flooded.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from ._pricing import format_credits

if TYPE_CHECKING:
    from .batch import BatchCounts

__all__ = ["ProgressLine"]


def _interactive(stream: TextIO) -> bool:
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressLine:
    """Renders :class:`~veo_async.BatchCounts` as one progress line on ``stream``.

    ``total`` is the number of inputs when known (a list), else ``None``.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
        log_every: float = 30.0,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _interactive(self.stream)
        self.min_interval = min_interval if self.interactive else log_every
        self._last = -float("inf")
        self._text = ""
        self._width = 0

    @staticmethod
    def render(counts: BatchCounts, total: int | None) -> str:
        """The line for ``counts`` (pure)."""
        finished = counts.done + counts.failed
        of = f"/{total}" if total is not None else ""
        parts = [f"veo-async: {finished}{of} finished", f"{counts.done} ok"]
        if counts.failed:
            parts.append(f"{counts.failed} failed")
        parts.append(f"{counts.running} running")
        waiting = counts.queued + counts.submitting
        if waiting:
            parts.append(f"{waiting} to submit")
        if counts.uncertain:
            parts.append(f"{counts.uncertain} uncertain")
        if counts.credits_used:
            parts.append(f"{format_credits(counts.credits_used)} credits")
        return ", ".join(parts)

    def update(self, counts: BatchCounts, *, force: bool = False) -> None:
        """Show ``counts`` if enough time has passed since the last line (or ``force``)."""
        now = time.monotonic()
        text = self.render(counts, self.total)
        self._text = text
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        self._write(text)

    def _write(self, text: str) -> None:
        try:
            if self.interactive:
                pad = " " * max(0, self._width - len(text))
                self.stream.write("\r" + text + pad)
                self._width = len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is optional
            pass

    def close(self) -> None:
        """Write the final line and end it."""
        if not self._text:
            return
        self._write(self._text)
        if self.interactive:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._text = ""
