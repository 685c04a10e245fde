"""The scheduler: tracked jobs in a heap keyed by their next poll time, and the wake-ups.

No task per job: 100,000 tracked jobs cost a small record each and no task. The runner's
dispatcher asks :meth:`Scheduler.next_due` for the next job whose poll is due; it sleeps
until then, or until a job is planned earlier than what it sleeps for (:meth:`push` wakes it).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import anyio

from .. import _timing
from ._jobs import Job, JobState

__all__ = ["Scheduler"]


class Scheduler:
    """The heap of planned polls. ``idle`` is called whenever the dispatcher goes to sleep
    (nothing is due: creates may go)."""

    __slots__ = ("_heap", "_idle", "_pushes", "_wake_at", "_wake_ev")

    def __init__(self, idle: Callable[[], None]) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._pushes = 0
        self._idle = idle
        self._wake_ev: anyio.Event | None = None
        self._wake_at = math.inf

    def push(self, job: Job, due: float) -> None:
        """Plan the next poll of ``job`` at ``due`` (no later than its deadline).

        An earlier entry for the job stays in the heap and is skipped when popped.
        """
        due = min(due, job.deadline)
        job.planned = due
        self._pushes += 1
        heapq.heappush(self._heap, (due, self._pushes, job))
        if self._wake_ev is not None and due < self._wake_at:
            self.wake()

    def earliest(self) -> float:
        """The earliest planned poll (``inf``: none)."""
        return self._heap[0][0] if self._heap else math.inf

    def wake(self) -> None:
        """Wake the dispatcher (a job was planned earlier, a job ended, input ran out)."""
        ev = self._wake_ev
        if ev is not None:
            self._wake_ev = None
            self._wake_at = math.inf
            ev.set()

    async def next_due(self, finished: Callable[[], bool]) -> tuple[Job, float, float] | None:
        """The next tracked job whose poll is due: ``(job, due, now)``; ``None`` once
        ``finished()`` (no input left and no job live)."""
        heap = self._heap
        no_wait = _timing.waiting_disabled
        while True:
            if finished():
                return None
            if not heap:
                await self._sleep(None, math.inf)
                continue
            due, _, job = heap[0]
            now = _timing.monotonic()
            if due > now and not no_wait():
                await self._sleep(due - now, due)
                continue
            heapq.heappop(heap)
            if job.state is JobState.TRACKING and due == job.planned:
                return job, due, now
            # otherwise finished, or planned again (an earlier entry replaced it)

    async def _sleep(self, delay: float | None, at: float) -> None:
        self._idle()
        ev = self._wake_ev = anyio.Event()
        self._wake_at = at
        if delay is None:
            await ev.wait()
        else:
            with anyio.move_on_after(delay):
                await ev.wait()
        if self._wake_ev is ev:
            self._wake_ev = None
            self._wake_at = math.inf
