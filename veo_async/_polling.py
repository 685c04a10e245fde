"""Compatibility shim: the poll policy lives in :mod:`veo_async.polling`."""

from __future__ import annotations

from .polling import FixedIntervalPolicy, PollPolicy, QueueModel, Schedule, schedule_cost

__all__ = ["FixedIntervalPolicy", "PollPolicy", "QueueModel", "Schedule", "schedule_cost"]
