"""Small text helpers of the report page: escaping, times and durations."""

from __future__ import annotations

import datetime as _dt
import html
import math


def esc(value: object) -> str:
    """``value`` as text safe inside HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def utc(ts: float | None) -> str:
    """An epoch time as ``2026-01-02 03:04:05 UTC``; ``-`` when unknown."""
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
