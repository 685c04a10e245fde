"""``veo-async batch --events FILE``: a JSON Lines log of every job event.

One line per event, appended and flushed as it happens (a crashed run keeps every line it
wrote)::

    {"time": "2026-12-01T23:50:01.123456+00:00", "event": "submitted", "input": 1, "line": 3,
     "generation_id": "gen-1a2b", "status": "queued", "request_id": null}

``event`` is one of ``submitting``, ``submitted``, ``status`` (each status the batch saw),
``succeeded``, ``failed``, ``downloaded``, ``download_failed`` (the batch observer's events
plus the downloads). ``input`` is the input's number (from 1, as in the video file names),
``line`` its line in the input file; ``request_id`` is the server's request id where known
(failures that came from a reply carrying one). ``error``, ``file`` and ``credits`` appear on
the events they belong to. The API key is never written. With ``-v`` each event is also a
log line on stderr carrying the same generation id and request id.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import IO, Any

__all__ = ["EventLog"]

logger = logging.getLogger("veo_async.cli.events")


class EventLog:
    """Appends job events to a JSONL file (when one was asked for) and to the log."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def open(self) -> None:
        """Open the file for appending (line-buffered); raises ``OSError``."""
        if self.path is not None and self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()

    def write(
        self,
        event: str,
        number: int | None,
        line: int | None,
        *,
        generation_id: str | None = None,
        status: str | None = None,
        request_id: str | None = None,
        **extra: Any,
    ) -> None:
        """Write one event (a failed write is logged once and the file dropped)."""
        record: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "event": event,
            "input": number,
            "line": line,
            "generation_id": generation_id,
            "status": status,
            "request_id": request_id,
        }
        record.update({k: v for k, v in extra.items() if v is not None})
        logger.info(
            "%s input=%s line=%s generation_id=%s status=%s request_id=%s",
            event,
            number,
            line,
            generation_id,
            status,
            request_id,
        )
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        except OSError as exc:
            logger.warning("cannot write the event log %s: %s; no more events", self.path, exc)
            self._fh = None
