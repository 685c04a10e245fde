"""A poll planner that follows a server hint: an example of the ``PollPlanner`` protocol."""

from __future__ import annotations

import math

from veo_async import Generation
from veo_async.polling import PollJob, PollPlanner


class ServerHintPlanner:
    """Poll when the server says a job will be done; otherwise do what ``fallback`` does.

    Some gateways add an estimate to a status reply, e.g. ``{"status": "generating",
    "eta_seconds": 12}``; a :class:`~veo_async.Generation` keeps unknown fields, so the hint
    can be read from ``reply.model_extra``. It is bounded to ``[least, most]`` seconds.
    """

    def __init__(
        self,
        fallback: PollPlanner,
        *,
        field: str = "eta_seconds",
        least: float = 0.5,
        most: float = 60.0,
        time_scale: float = 1.0,
    ) -> None:
        self.fallback, self.field = fallback, field
        self.least, self.most, self.time_scale = least, most, time_scale

    def hint(self, reply: Generation) -> float | None:
        """The server's estimate in real seconds, or ``None`` when there is no usable one."""
        value = (reply.model_extra or {}).get(self.field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(value) or value < 0:
            return None
        return min(max(float(value), self.least), self.most) * self.time_scale

    def first_poll(self, job: PollJob, now: float) -> float:
        return self.fallback.first_poll(job, now)

    def next_poll(self, job: PollJob, reply: Generation, now: float) -> float:
        seconds = self.hint(reply)
        return self.fallback.next_poll(job, reply, now) if seconds is None else now + seconds

    def after_failure(self, job: PollJob, now: float) -> float:
        return self.fallback.after_failure(job, now)

    def finished(self, job: PollJob, reply: Generation | None, now: float) -> None:
        self.fallback.finished(job, reply, now)
