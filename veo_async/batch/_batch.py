"""The public handle: :class:`Batch`, an async context manager and an async iterator.

It owns the outer task group, so leaving the ``async with`` block (normally, by ``break``,
by an exception or by cancellation) stops the :class:`~._runner.Runner`, waits for its tasks
and only then returns (see the package docstring for why).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable, Iterable, Mapping
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from ..polling import PollPolicy
from ._api import JobsAPI
from ._errors import other_leaves
from ._options import BatchOptions
from ._results import BatchCounts, BatchInput, BatchItem, BatchResult, PendingJob
from ._runner import Runner

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Batch"]


class Batch:
    """A running batch; use as ``async with client.batch(...) as batch: async for r in batch``.

    Made by ``client.batch()`` / ``client.as_completed()`` with a :class:`BatchOptions`
    (every option is documented there). ``job_timeout`` ends tracking, not the generation:
    the result carries :class:`~veo_async.WaitTimeoutError` with the id, and the job stays in
    :meth:`pending`. The cost guard's rules are in the package docstring.
    """

    def __init__(
        self,
        api: JobsAPI,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: BatchOptions | None = None,
    ) -> None:
        if isinstance(inputs, (str, bytes, Mapping)):
            raise TypeError(
                "inputs must be an iterable of inputs (a list of prompts, ...), not a single "
                f"{type(inputs).__name__}"
            )
        self.options = options = options or BatchOptions()
        self._runner = Runner(api, inputs, options)
        self._outer: TaskGroup | None = None
        self._entered = False

    @property
    def policy(self) -> PollPolicy:
        """The poll policy this batch plans with (and teaches)."""
        return self._runner.policy

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise RuntimeError("a Batch can be entered only once")
        self._entered = True
        runner = self._runner
        runner.open()
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        with runner.instr.use(runner.span):  # every task spawned from here on inherits it
            outer.start_soon(runner.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        outer = self._outer
        runner = self._runner
        if outer is None:
            return None
        if not runner.run_done:
            runner.stop("cancelled")
            runner.begin_cancel()
            outer.cancel_scope.cancel()
        try:
            suppress = await outer.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The tasks never raise (they record fatal errors), so a group can only wrap the
            # exception of the ``async with`` body, plus cancellations: let that one through.
            if exc is not None and not other_leaves(group, exc):
                return False
            raise
        finally:
            runner.close()
        fatal = runner.take_fatal() if exc is None else None
        if fatal is not None:
            raise fatal
        return suppress

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> BatchResult:
        runner = self._runner
        recv = runner.outbox.recv
        if recv is None:
            raise RuntimeError("iterate a batch inside `async with client.batch(...) as batch:`")
        try:
            result = await recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            fatal = runner.take_fatal()
            if fatal is not None:
                raise fatal from None
            raise StopAsyncIteration from None
        runner.consumed(result.index)
        observer = self.options.observer
        if observer is not None:
            await observer.on_result(result)
        return result

    # ------------------------------------------------------------------ public state

    @property
    def counts(self) -> BatchCounts:
        """Live counters."""
        return self._runner.counts()

    def pending(self) -> list[PendingJob]:
        """Submitted jobs whose result was not consumed, plus timed-out jobs, by index.

        Resume them later with ``client.as_completed([p.generation_id for p in pending])``.
        """
        runner = self._runner
        out = dict(runner.timed_out)
        for job in runner.table.jobs.values():
            if job.gid is not None and job.index not in out:
                out[job.index] = PendingJob(job.index, job.gid, job.request, job.key)
        return [out[i] for i in sorted(out)]

    def unsubmitted(self) -> list[tuple[int, BatchItem]]:
        """Inputs that were read but never submitted (e.g. after cancellation or a budget stop).

        Includes inputs whose create was refused with 403. Inputs not read at all start at
        index ``counts.total_seen`` of your input sequence.
        """
        return sorted(self._runner.unsubmitted.items(), key=lambda kv: kv[0])

    def uncertain(self) -> list[tuple[int, BatchItem]]:
        """Inputs whose create may or may not have started a (billed) generation.

        A create of unknown outcome (:class:`~veo_async.CreateOutcomeUnknownError`: the request
        may have reached the server and no usable id came back, including a blank id or an id
        the server had already given another input), or a create still unanswered
        ``create_grace`` seconds after the batch was cancelled. Each input is listed once;
        resubmit one only if paying twice is acceptable.
        """
        return list(self._runner.uncertain)

    @property
    def stop_reason(self) -> str | None:
        """Why submission stopped early (budget, 401, 403, cancelled), if it did.

        ``None`` when every input was read and submitted; a failed job, a failed poll or a
        create of unknown outcome does not stop a batch.
        """
        return self._runner.stop_reason
