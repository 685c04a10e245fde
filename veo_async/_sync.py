"""``VeoClient``: the same operations without ``await``, for scripts and notebooks.

It is not a second implementation: it runs an :class:`AsyncVeoClient` on an event loop in a
background thread (an anyio blocking portal) and calls into it. Because that loop lives in its
own thread, the facade also works where an event loop is already running in the calling thread,
such as a Jupyter notebook.

The loop thread is a daemon thread, and a client that is never closed is closed for you when
it is garbage-collected or at interpreter exit (``weakref.finalize``), so a script that forgets
``close()`` (or dies with an exception) still exits, as ``requests`` and ``openai`` users expect.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._client import AsyncVeoClient
from ._download import DownloadedVideo
from ._models import Generation, VideoRequest
from ._polling import PollPolicy
from .batch import (
    Batch,
    BatchCounts,
    BatchInput,
    BatchItem,
    BatchObserver,
    BatchOptions,
    BatchResult,
    PendingJob,
    StoreOptions,
)
from .batch._options import resolve_options

if TYPE_CHECKING:
    from .stores import JobStore

__all__ = ["SyncBatch", "VeoClient"]

_T = TypeVar("_T")
logger = logging.getLogger("veo_async")
#: Seconds closing may take at exit or on garbage collection before it is abandoned.
_SHUTDOWN_GRACE = 5.0


def _start_portal(backend: str) -> tuple[BlockingPortal, threading.Thread]:
    """Run an event loop with a blocking portal in a daemon thread (never joined at exit)."""
    ready: Future[BlockingPortal] = Future()

    async def main() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:  # reported to the constructor
            if not ready.done():
                ready.set_exception(exc)

    thread = threading.Thread(target=run, name="veo-async-loop", daemon=True)
    thread.start()
    return ready.result(), thread


def _shutdown(portal: BlockingPortal, client: AsyncVeoClient, thread: threading.Thread) -> None:
    """Close the client and stop the loop, each within a grace period (never raises)."""
    if threading.current_thread() is thread:
        # the last reference went away on the loop itself: it cannot wait for itself
        return
    for step in (client.aclose, functools.partial(portal.stop, True)):
        try:
            portal.start_task_soon(step).result(_SHUTDOWN_GRACE)
        except BaseException:  # best effort: cancelled, timed out, loop gone
            logger.debug("closing a VeoClient did not finish cleanly", exc_info=True)
    thread.join(_SHUTDOWN_GRACE)


class VeoClient:
    """Blocking client: ``with VeoClient() as client: client.generate(prompt=...)``.

    Takes the same arguments as :class:`AsyncVeoClient`, plus ``backend`` (``"asyncio"`` or
    ``"trio"``) for the background event loop. Close it (or use ``with``) to stop the thread;
    one that is never closed is closed when garbage-collected or at interpreter exit.
    """

    def __init__(self, api_key: str | None = None, *, backend: str = "asyncio", **options: Any):
        self._closed = True
        client = AsyncVeoClient(api_key, **options)  # configuration errors: no thread started
        self._portal, thread = _start_portal(backend)
        self._client = client
        self._finalizer = weakref.finalize(self, _shutdown, self._portal, client, thread)
        try:
            self._portal.call(client.__aenter__)
        except BaseException:
            self._finalizer()
            raise
        self._closed = False

    def __repr__(self) -> str:
        return f"VeoClient({self._client!r})"

    @property
    def async_client(self) -> AsyncVeoClient:
        """The :class:`AsyncVeoClient` doing the work."""
        return self._client

    def _call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError("this VeoClient is closed")
        return self._portal.call(functools.partial(func, *args, **kwargs))

    def close(self) -> None:
        """Close the HTTP client and stop the background event loop."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> VeoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(self, request: VideoRequest | None = None, /, **kwargs: Any) -> Generation:
        """Create a generation (see :meth:`AsyncVeoClient.submit`)."""
        result: Generation = self._call(self._client.submit, request, **kwargs)
        return result

    def get(self, generation_id: str) -> Generation:
        """Poll once (see :meth:`AsyncVeoClient.get`)."""
        result: Generation = self._call(self._client.get, generation_id)
        return result

    def wait(self, generation: str | Generation, **kwargs: Any) -> Generation:
        """Poll until done (see :meth:`AsyncVeoClient.wait`)."""
        result: Generation = self._call(self._client.wait, generation, **kwargs)
        return result

    def generate(self, request: VideoRequest | None = None, /, **kwargs: Any) -> Generation:
        """Submit and wait (see :meth:`AsyncVeoClient.generate`)."""
        result: Generation = self._call(self._client.generate, request, **kwargs)
        return result

    def download(
        self, source: Generation | str, path: str | os.PathLike[str], **kwargs: Any
    ) -> DownloadedVideo:
        """Download a video (see :meth:`AsyncVeoClient.download`)."""
        result: DownloadedVideo = self._call(self._client.download, source, path, **kwargs)
        return result

    def batch(
        self,
        inputs: Iterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        store: JobStore | str | None = None,
        store_options: StoreOptions | None = None,
        queue_ahead: float | None = 1.0,
    ) -> SyncBatch:
        """Run a batch; iterate the result for :class:`BatchResult` in completion order.

        ``for result in client.batch(prompts): ...`` works; use ``with client.batch(...) as b``
        to read ``b.pending()`` after stopping early. Options as in
        :meth:`AsyncVeoClient.batch` (keywords, or one ``options=``); ``store=`` makes it a
        durable batch as there (a SQLite file, or a Redis shared by several processes).
        """
        opts = resolve_options(
            options,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            poll_policy=poll_policy,
            job_timeout=job_timeout,
            batch_timeout=batch_timeout,
            max_generations=max_generations,
            credit_budget=credit_budget,
            observer=observer,
            buffer=buffer,
            estimated_credits_per_job=estimated_credits_per_job,
            create_grace=create_grace,
            max_poll_failures=max_poll_failures,
            progress=progress,
            queue_ahead=queue_ahead,
        )
        if store is None and store_options is not None:
            raise TypeError("store_options= needs store= (a JobStore or a store URL)")
        if store is not None:
            where = store
            return SyncBatch(
                self,
                lambda: self._client.batch(
                    inputs, options=opts, store=where, store_options=store_options
                ),
            )
        return SyncBatch(self, lambda: self._client.batch(inputs, options=opts))

    def as_completed(
        self,
        generation_ids: Iterable[str],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        queue_ahead: float | None = 1.0,
    ) -> SyncBatch:
        """Track existing ids; iterate for results as each finishes (options as :meth:`batch`)."""
        opts = resolve_options(
            options,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            poll_policy=poll_policy,
            job_timeout=job_timeout,
            batch_timeout=batch_timeout,
            max_generations=max_generations,
            credit_budget=credit_budget,
            observer=observer,
            buffer=buffer,
            estimated_credits_per_job=estimated_credits_per_job,
            create_grace=create_grace,
            max_poll_failures=max_poll_failures,
            progress=progress,
            queue_ahead=queue_ahead,
        )
        items = [BatchItem(generation_id=g) for g in generation_ids]
        return SyncBatch(self, lambda: self._client.batch(items, options=opts))


class SyncBatch:
    """A blocking view of :class:`~veo_async.Batch`: a context manager and an iterator."""

    def __init__(self, owner: VeoClient, factory: Callable[[], Batch]) -> None:
        self._owner = owner
        self._factory = factory
        self._batch: Batch | None = None
        self._cm: contextlib.AbstractContextManager[Batch] | None = None

    def __enter__(self) -> SyncBatch:
        if self._cm is not None:
            raise RuntimeError("this batch was already started")
        batch = self._owner._call(self._factory_in_loop)
        self._cm = self._owner._portal.wrap_async_context_manager(batch)
        self._batch = self._cm.__enter__()
        return self

    async def _factory_in_loop(self) -> Batch:
        return self._factory()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._cm is not None
        return self._cm.__exit__(exc_type, exc, tb)

    def __iter__(self) -> Iterator[BatchResult]:
        if self._cm is None:
            with self:
                yield from self._results()
        else:
            yield from self._results()

    def _results(self) -> Iterator[BatchResult]:
        assert self._batch is not None
        batch = self._batch
        while True:
            try:
                result: BatchResult = self._owner._portal.call(batch.__anext__)
            except StopAsyncIteration:
                return
            yield result

    @property
    def counts(self) -> BatchCounts:
        """Live counters of the underlying batch."""
        assert self._batch is not None, "the batch has not started"
        return self._batch.counts

    def pending(self) -> list[PendingJob]:
        """Submitted-but-unfinished jobs (see :meth:`Batch.pending`)."""
        assert self._batch is not None, "the batch has not started"
        return self._batch.pending()

    def unsubmitted(self) -> list[tuple[int, BatchItem]]:
        """Inputs never submitted (see :meth:`Batch.unsubmitted`)."""
        assert self._batch is not None, "the batch has not started"
        return self._batch.unsubmitted()

    def uncertain(self) -> list[tuple[int, BatchItem]]:
        """Inputs whose create may or may not have been billed (see :meth:`Batch.uncertain`)."""
        assert self._batch is not None, "the batch has not started"
        return self._batch.uncertain()

    @property
    def stop_reason(self) -> str | None:
        """Why submission stopped early, if it did (see :attr:`Batch.stop_reason`)."""
        assert self._batch is not None, "the batch has not started"
        return self._batch.stop_reason
