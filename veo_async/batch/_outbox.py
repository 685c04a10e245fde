"""Where a batch's output leaves it: the result stream, the result counters, the observer's
notifications and the job spans, in the order a consumer sees them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._progress import ProgressLine
from ._results import BatchCounts, BatchObserver, BatchResult, JobEvent

if TYPE_CHECKING:
    from .._models import Generation
    from ._jobs import Job

__all__ = ["Outbox"]


class Outbox:
    """The results of one batch on their way out. ``counts`` gives the live counters (with
    the fields read on demand filled in) for ``on_progress``."""

    __slots__ = ("_counts", "_observer", "line", "recv", "send")

    def __init__(self, counts: Callable[[], BatchCounts], observer: BatchObserver | None) -> None:
        self._counts = counts
        self._observer = observer
        #: The progress line (``progress=True``), updated with every change of the counters.
        self.line: ProgressLine | None = None
        self.send: MemoryObjectSendStream[BatchResult] | None = None
        self.recv: MemoryObjectReceiveStream[BatchResult] | None = None

    def open(self) -> None:
        """Make the stream (unbounded: the feeder's ``buffer`` check is the bound)."""
        self.send, self.recv = anyio.create_memory_object_stream[BatchResult](math.inf)

    def waiting(self) -> int:
        """Results sent and not consumed yet."""
        assert self.recv is not None
        return self.recv.statistics().current_buffer_used

    def event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        """A per-job event for the observer."""
        if self._observer is not None:
            self._observer.on_event(index, event, generation)

    def progress(self) -> None:
        """The counters changed."""
        if self._observer is not None:
            self._observer.on_progress(self._counts())
        if self.line is not None:
            self.line.update(self._counts())

    def emit(self, result: BatchResult, job: Job | None = None) -> None:
        """Count a result, tell the observer, close the job's span, and send it."""
        counts = self._counts()
        ok = result.error is None
        if ok:
            counts.done += 1
        else:
            counts.failed += 1
        self.event(result.index, JobEvent.SUCCEEDED if ok else JobEvent.FAILED, result.generation)
        if job is not None:
            end_span(job, result.generation, result.error)
        result.finished_at = time.time()
        assert self.send is not None
        self.send.send_nowait(result)
        self.progress()


def end_span(job: Job, generation: Generation | None, error: BaseException | None) -> None:
    """Close a job's span (once) with its id, last status and error."""
    span = job.span
    if span is None:
        return
    job.span = None
    span.set("veo.generation_id", job.gid)
    if generation is not None:
        span.set("veo.status", str(generation.status))
    if error is not None:
        span.fail(error)
    span.end()
