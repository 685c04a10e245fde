"""The feeder: reads inputs while there is room, and admits each create when the cost guard
and a concurrency slot allow.

One event wakes it whenever something it waits for may have changed: a result consumed, a
cost reported, a job ended, the dispatcher idle (nothing due: creates may go).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

import anyio

from .. import _timing
from .._exceptions import RequestValidationError
from .._models import coerce_request
from ._guard import Verdict
from ._results import BatchInput, BatchItem, BatchResult

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["Feeder"]


class Feeder:
    """The feeder task of one batch (see the module docstring)."""

    __slots__ = ("_ev", "_runner", "_source", "done")

    def __init__(
        self, runner: Runner, source: Iterable[BatchInput] | AsyncIterable[BatchInput]
    ) -> None:
        self._runner = runner
        self._source = source
        self._ev: anyio.Event | None = None
        self.done = False
        """Every input read (or the feeder stopped)."""

    def wake(self) -> None:
        """Something the feeder may wait for changed."""
        ev = self._ev
        if ev is not None:
            self._ev = None
            ev.set()

    async def wait(self) -> None:
        """Wait for the next :meth:`wake`."""
        ev = self._ev
        if ev is None:
            ev = self._ev = anyio.Event()
        await ev.wait()

    async def run(self) -> None:
        """The task: read and admit inputs until none are left or the batch stops."""
        r = self._runner
        try:
            source = self._source
            if isinstance(source, AsyncIterable):
                await self._feed_async(source.__aiter__())
            else:
                await self._feed_sync(iter(source))
        except Exception as exc:
            r.die(exc)
        finally:
            self.done = True
            r.scheduler.wake()

    async def _feed_async(self, it: AsyncIterator[BatchInput]) -> None:
        while await self._room():
            try:
                raw = await it.__anext__()
            except StopAsyncIteration:
                return
            await self._take(raw)

    async def _feed_sync(self, it: Iterator[BatchInput]) -> None:
        while await self._room():
            try:
                raw = next(it)
            except StopIteration:
                return
            await self._take(raw)
            await anyio.lowlevel.checkpoint()

    async def _room(self) -> bool:
        """Wait while too many finished results are unconsumed; false once stopping."""
        r = self._runner
        while not r.stopping and r.outbox.waiting() >= r.options.buffer:
            await self.wait()
        return not r.stopping

    async def _take(self, raw: BatchInput) -> None:
        r = self._runner
        index = r.table.counts.total_seen
        r.table.counts.total_seen += 1
        if isinstance(raw, BatchItem):
            item = raw
        else:
            try:
                item = BatchItem(request=coerce_request(raw))
            except RequestValidationError as exc:
                r.outbox.emit(BatchResult(index, None, None, error=exc, finished_at=time.time()))
                return
        if item.generation_id is not None:
            r.track(index, item)
            return
        if item.request is None:
            raise TypeError(f"input {index}: a BatchItem needs a request or a generation_id")
        r.unsubmitted[index] = item
        if not await self._admit():
            return
        r.start_create(index, item)

    async def _admit(self) -> bool:
        """Wait until one more create may go and a slot is held for it; false: stop."""
        r = self._runner
        while True:
            verdict, reason = self._verdict()
            while verdict is Verdict.WAIT:
                await self.wait()
                verdict, reason = self._verdict()
            if verdict is Verdict.STOP:
                r.stop(reason or "stopped")
                return False
            await self._ahead()  # returns at once when stopping (checked after the slot)
            await self._polls_first()
            await r.slot()
            if r.stopping:
                r.sem.release()
                return False
            if self._verdict()[0] is Verdict.GO:
                return True
            # While this create waited for a slot, other jobs reported what they cost (or
            # failed to): the guard is asked again before anything is reserved or sent.
            r.sem.release()

    def _verdict(self) -> tuple[Verdict, str | None]:
        r = self._runner
        if r.stopping:
            return Verdict.STOP, r.stop_reason or "stopped"
        return r.guard.verdict(r.table.made, r.table.creating)

    async def _ahead(self) -> None:
        """Hold the create while the paid-but-not-started jobs would exceed the cap
        (``BatchOptions.queue_ahead``; see :meth:`BatchPlanner.room_ahead`).

        A job finished, a poll seen, or the newest job probed wakes it; meanwhile, while the
        server's concurrency is unknown, the newest job is polled soon after its create to
        learn it.
        """
        r = self._runner
        waves = r.options.queue_ahead
        if waves is None:
            return
        planner = r.planner
        while not r.stopping and not planner.room_ahead(r.table.creating, waves):
            probe = planner.probe(_timing.monotonic())
            if probe is not None:
                r.scheduler.push(*probe)
            await self.wait()

    async def _polls_first(self) -> None:
        """Due polls go before new creates, but only while the server has a deep queue.

        A create starts a job (about 45 s of work) earlier; a poll held back only detects a
        finished job a little later. So creates and due polls take turns at the semaphore
        (FIFO) by default, and polls go first only when the server is known to be saturated
        with at least two waves of this batch's jobs queued or running (a create then only
        joins the queue).
        """
        r = self._runner
        planner = r.planner
        while (
            planner.deep_queue
            and not r.stopping
            and r.scheduler.earliest() <= _timing.monotonic()
            and not _timing.waiting_disabled()
        ):
            await self.wait()  # the dispatcher wakes us when nothing is due
