"""A batch whose jobs live in a :class:`~veo_async.stores.JobStore`: ``client.batch(inputs,
store=...)``.

The store is the truth and the :class:`~._batch.Batch` underneath is the engine. Around it:

- **Inputs** are validated locally, keyed (:func:`~veo_async.stores.input_keys`: the SHA-256 of
  the request body, repeated requests numbered) and added to the store, idempotently: every
  worker of a batch adds the same inputs, and a rerun after a crash adds nothing new.
- **Leases** hand the jobs to workers (:meth:`JobStore.take_work`): this worker feeds the
  engine only the jobs it leased (``lease_batch`` inputs to create per store call, or ids to
  track in rounds that grow to hundreds: :func:`next_lease_size`), renews its leases while it
  works (``lease_seconds / 3``), and takes over the leases of a worker that stopped renewing
  (:meth:`JobStore.reclaim`: it died). What a leased job needs depends on its state in the
  store: ``pending`` is submitted, ``submitted`` is tracked by its id, ``submitting`` (a
  worker died with the create in flight) becomes ``uncertain`` and is never sent again.
- **The intent step** (:meth:`JobStore.claim_intent`) is taken right before the create is
  sent, after the engine's rate and cost checks: exactly one worker wins it, durably, so a
  create is never sent without its intent on record and never sent twice.
- **Outcomes** are written back as each result is consumed; the lease then ends (a job that
  timed out keeps its lease until this worker stops, so a later run takes it over).

A worker stops feeding when no job of the batch is left unsettled outside its own leases, so
workers keep watch for a dead peer's jobs until the whole batch is done.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .._exceptions import CreateOutcomeUnknownError, RequestValidationError, WaitTimeoutError
from .._models import Generation, GenerationStatus, VideoRequest, coerce_request
from ..stores._base import Event
from ._batch import Batch
from ._guard import sane_credits
from ._options import BatchOptions
from ._results import (
    BatchCounts,
    BatchInput,
    BatchItem,
    BatchObserver,
    BatchResult,
    InputTaken,
    JobEvent,
    PendingJob,
)

if TYPE_CHECKING:
    from ..polling import PollPolicy
    from ..stores import JobStore, StoredJob, WorkItem
    from ._api import JobsAPI

__all__ = ["DurableBatch", "StoreOptions", "next_lease_size"]

RECORD_BATCH = 256
"""At most this many results that are already waiting are recorded in one store call."""

LEASE_MAX = 512
"""At most this many jobs are leased (and read) in one store call."""

LEASE_HORIZON = 0.5
"""A lease round covers about this many wall seconds of what the engine takes in."""

log = logging.getLogger("veo_async.batch")


def _default_worker() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class StoreOptions:
    """How a batch with a store (``client.batch(inputs, store=...)``) shares its work.

    Invalid values raise ``ValueError`` when the options are made, before anything is sent.
    """

    worker: str | None = None
    """This worker's name in the store (default: host name, process id and a random suffix).
    Every process of a batch needs its own name."""
    batch_id: str | None = None
    """The batch's namespace when ``store`` is a URL (default: derived from the input keys,
    so every worker started with the same inputs joins the same batch). A store object has
    its own."""
    lease_seconds: float = 30.0
    """A worker that has not renewed its leases for this long is taken for dead and its jobs
    are taken over (renewed every third of it). The server's clock decides, not the
    workers'. Keep it longer than the longest stall of a live worker (a blocked event loop, a
    store outage): a worker that stalls past it keeps running the jobs a peer took over, and
    both report them (nothing is billed twice: the intent step has one winner)."""
    max_leased: int = 1000
    """The most jobs this worker holds at once; the rest stay for other workers."""
    idle_poll: float = 1.0
    """Seconds between looks for work (new, or a dead worker's) while there is none."""
    lease_batch: int = 8
    """Jobs leased per request to the store while there are inputs to create: small keeps
    the work spread over workers that start together. Ids to track (already submitted) are
    leased in growing rounds instead, what the engine takes in within about half a second
    (up to 512 per request, ``max_leased`` in all), so that tracking 100,000 ids costs a few
    hundred store calls, not tens of thousands; ``lease_batch`` is then the first round and
    the least."""

    def __post_init__(self) -> None:
        if not (self.lease_seconds > 0 and self.idle_poll > 0):
            raise ValueError("lease_seconds and idle_poll must be positive numbers of seconds")
        if self.max_leased < 1 or self.lease_batch < 1:
            raise ValueError("max_leased and lease_batch must be at least 1")
        if self.worker is not None and not self.worker.strip():
            raise ValueError("worker must be a non-empty name (or None for a generated one)")


_UNSETTLED = ("pending", "submitting", "submitted")


class _StoreObserver:
    """Records every step in the store and passes the hooks on to the user's observer with
    the input's position in place of the engine's arrival index."""

    def __init__(self, owner: DurableBatch, user: BatchObserver | None) -> None:
        self._owner = owner
        self._user = user

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        owner = self._owner
        assert owner.store is not None
        assert isinstance(item.key, str)
        if not await owner.store.claim_intent(item.key, owner.worker):
            owner.release(item.key)
            raise InputTaken(item.key)
        if self._user is not None:
            await self._user.before_submit(owner.position(index), item, request)

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        from ..stores import Event

        owner = self._owner
        assert owner.store is not None
        assert isinstance(item.key, str)
        await owner.store.transition(
            item.key, Event.SUBMITTED, generation_id=generation.id, status=str(generation.status)
        )
        if self._user is not None:
            await self._user.after_submit(owner.position(index), item, generation)

    async def on_result(self, result: BatchResult) -> None:
        if self._user is not None:
            await self._user.on_result(result)

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        if self._user is not None:
            self._user.on_event(self._owner.position(index), event, generation)

    def on_progress(self, counts: BatchCounts) -> None:
        if self._user is not None:
            self._user.on_progress(counts)


def next_lease_size(taken: int, seconds: float, floor: int, ceiling: int = LEASE_MAX) -> int:
    """The size of the next lease round, from how fast the engine took the last one in.

    ``taken`` jobs were taken in ``seconds``: the next round is what the engine would take
    in :data:`LEASE_HORIZON` seconds at that pace, no less than ``floor`` (the worker's
    ``lease_batch``) and no more than ``ceiling``. Tracked ids go into the engine at once (the
    round grows to the ceiling: few store calls per id); an engine held back (its caller reads
    results slowly) brings it back down. Rounds with inputs to create are not sized by this:
    they stay at ``lease_batch`` (the engine takes creates in as fast as it admits them, which
    says nothing of how fast it gets through them, and small rounds keep them spread over the
    workers).
    """
    rate = taken / max(seconds, 1e-6)
    return max(floor, min(ceiling, int(rate * LEASE_HORIZON)))


class _HandOver:
    """Leased jobs on their way into the engine: the engine's input, an async iterator.

    A lease round is put in at once, and the engine takes the jobs one after the other
    without a task switch for each (a checkpoint every :attr:`YIELD_EVERY`), where a
    rendezvous stream would cost two switches per job. :meth:`drained` lets the lease loop
    wait until the engine has taken everything before it leases more.
    """

    YIELD_EVERY = 64

    def __init__(self) -> None:
        self._items: deque[BatchItem] = deque()
        self._wake: anyio.Event | None = None
        self._empty: anyio.Event | None = None
        self._closed = False
        self._run = 0

    @property
    def waiting(self) -> int:
        """Jobs put in and not taken by the engine yet."""
        return len(self._items)

    def put(self, item: BatchItem) -> None:
        """Queue one job for the engine."""
        self._items.append(item)
        self._set_wake()

    def close(self) -> None:
        """No more jobs: the engine's input ends once it has taken what is queued."""
        self._closed = True
        self._set_wake()

    def take_back(self) -> list[BatchItem]:
        """Every job the engine has not taken (they will never reach it)."""
        items = list(self._items)
        self._items.clear()
        self._set_empty()
        return items

    async def drained(self) -> None:
        """Wait until the engine has taken every queued job."""
        while self._items:
            if self._empty is None:
                self._empty = anyio.Event()
            await self._empty.wait()

    def _set_wake(self) -> None:
        ev, self._wake = self._wake, None
        if ev is not None:
            ev.set()

    def _set_empty(self) -> None:
        ev, self._empty = self._empty, None
        if ev is not None:
            ev.set()

    def __aiter__(self) -> _HandOver:
        return self

    async def __anext__(self) -> BatchItem:
        if self._run >= self.YIELD_EVERY:  # before taking: a cancelled checkpoint loses nothing
            self._run = 0
            await anyio.lowlevel.checkpoint()
        while not self._items:
            self._run = 0
            if self._closed:
                raise StopAsyncIteration
            if self._wake is None:
                self._wake = anyio.Event()
            await self._wake.wait()
        item = self._items.popleft()
        self._run += 1
        if not self._items:
            self._set_empty()
        return item


class DurableBatch(Batch):
    """A batch whose jobs live in a store; ``async with client.batch(inputs, store=...)``.

    Use it as :class:`~veo_async.Batch` (``async with ... as batch: async for result in
    batch``). Results carry the input's position in ``inputs`` as ``index`` and the store's
    input key as ``key``. Run the same code with the same inputs and store on several
    processes or machines (a ``redis://`` store) and they share the work: each input is
    submitted once across all of them. Run it again after a crash and it resumes: nothing is
    submitted twice, jobs submitted before the crash are tracked by their ids, and a create
    that was in flight is reported as uncertain.
    """

    def __init__(
        self,
        api: JobsAPI,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        options: BatchOptions,
        store: JobStore | str,
        store_options: StoreOptions | None = None,
    ) -> None:
        # Not Batch.__init__: the engine (an inner Batch fed by this worker's leases) is made
        # on entry, once the store is open. Same public face as Batch.
        if isinstance(inputs, (str, bytes, Mapping)):
            raise TypeError(
                "inputs must be an iterable of inputs (a list of prompts, ...), not a single "
                f"{type(inputs).__name__}"
            )
        if not isinstance(store, str) and not hasattr(store, "claim_intent"):
            raise TypeError(
                "store must be a JobStore (SQLiteStore, RedisStore) or a URL such as "
                f"'sqlite:///path/jobs.sqlite3' or 'redis://host:6379/0', got {store!r}"
            )
        self.options = options
        self.store_options = store_options = store_options or StoreOptions()
        self.worker = store_options.worker or _default_worker()
        self._api = api
        self._inputs = inputs
        self._store_arg = store
        self.store: JobStore | None = None if isinstance(store, str) else store
        self._owns_store = isinstance(store, str)
        self._positions: dict[str, int] = {}
        self._sent: list[int] = []  # engine arrival index -> position
        self._held: dict[str, WorkItem] = {}
        self._side: deque[BatchResult] = deque()
        self._ready: deque[BatchResult] = deque()  # recorded, not returned yet
        self._unreturned: dict[str, WorkItem] = {}  # leases of recorded, unreturned results
        self._inner: Batch | None = None
        self._tg: TaskGroup | None = None
        self._bg_scope = anyio.CancelScope()
        self._handover = _HandOver()
        self._room: anyio.Event | None = None  # set when leases end (room for more)
        self._entered = False
        self._fed_all = False

    # ------------------------------------------------------------------ helpers

    def position(self, engine_index: int) -> int:
        """The input position of the engine's ``engine_index``-th item."""
        sent = self._sent
        return sent[engine_index] if 0 <= engine_index < len(sent) else engine_index

    def release(self, key: str) -> None:
        """Forget this worker's lease on ``key`` (another worker has the job)."""
        self._drop(key)

    def _drop(self, key: str) -> WorkItem | None:
        """End this worker's hold on ``key`` (the lease loop may lease one more)."""
        item = self._held.pop(key, None)
        if item is not None:
            ev, self._room = self._room, None
            if ev is not None:
                ev.set()
        return item

    async def _wait_room(self, need: int, timeout: float) -> None:
        """Wait until ``need`` more jobs may be leased, or ``timeout`` s."""
        with anyio.move_on_after(timeout):
            while self.store_options.max_leased - len(self._held) < need:
                if self._room is None:
                    self._room = anyio.Event()
                await self._room.wait()

    async def _ack(self, key: str) -> None:
        item = self._drop(key)
        if item is not None and self.store is not None:
            await self.store.ack(self.worker, [item])

    # ------------------------------------------------------------------ setup

    async def _read_inputs(self) -> list[BatchInput]:
        source = self._inputs
        if isinstance(source, AsyncIterable):
            return [raw async for raw in source]
        return list(source)

    async def _prepare(self) -> None:
        """Validate and key the inputs, open the store, add them (idempotent)."""
        from ..stores import batch_fingerprint, input_keys, open_store

        raw_inputs = await self._read_inputs()
        bodies: list[tuple[int, dict[str, Any]]] = []
        tracked: list[tuple[int, str]] = []
        for position, raw in enumerate(raw_inputs):
            try:
                if isinstance(raw, BatchItem):
                    if raw.generation_id is not None:
                        tracked.append((position, raw.generation_id))
                        continue
                    if raw.request is None:
                        raise TypeError(
                            f"input {position}: a BatchItem needs a request or a generation_id"
                        )
                    request = raw.request
                else:
                    request = coerce_request(raw)
            except RequestValidationError as exc:
                self._side.append(
                    BatchResult(position, None, None, error=exc, finished_at=time.time())
                )
                continue
            bodies.append((position, request.to_body()))
        keys = input_keys(body for _, body in bodies)
        for (position, _), key in zip(bodies, keys, strict=True):
            self._positions.setdefault(key, position)
        for position, gid in tracked:
            self._positions.setdefault("id:" + gid, position)
        if self.store is None:
            url = self._store_arg
            assert isinstance(url, str)
            batch_id = self.store_options.batch_id or batch_fingerprint(self._positions)
            self.store = await open_store(url, batch_id=batch_id)
        store = self.store
        await store.add_inputs(zip(keys, (body for _, body in bodies), strict=True))
        if tracked:
            await store.add_tracked(gid for _, gid in tracked)

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> DurableBatch:
        if self._entered:
            raise RuntimeError("a batch can be entered only once")
        self._entered = True
        await self._prepare()
        options = replace(self.options, observer=_StoreObserver(self, self.options.observer))
        inner = self._inner = Batch(self._api, self._handover, options)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await inner.__aenter__()
        except BaseException:
            await tg.__aexit__(None, None, None)
            raise
        tg.start_soon(self._background)
        return self

    async def _background(self) -> None:
        """The lease loop and the heartbeat, cancelled together (never the host task)."""
        with self._bg_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._lease_loop)
                tg.start_soon(self._heartbeat_loop)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        inner, tg = self._inner, self._tg
        if inner is None or tg is None:
            return None
        try:
            self._bg_scope.cancel()  # the lease loop may be waiting to hand the engine a job
            try:
                suppress = await inner.__aexit__(exc_type, exc, tb)
            finally:
                await tg.__aexit__(None, None, None)
                self._handover.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await self._give_back_unreturned()
                    await self._settle_leftovers(inner)
        finally:
            if self._owns_store and self.store is not None:
                with anyio.CancelScope(shield=True):
                    await self.store.aclose()
        return suppress

    async def _settle_leftovers(self, inner: Batch) -> None:
        """Inputs claimed but never sent go back to pending; unanswered creates are uncertain."""
        from ..stores import Event

        store = self.store
        assert store is not None
        for _, item in inner.unsubmitted():
            if isinstance(item.key, str):
                await store.transition(item.key, Event.NOT_SENT)
        for _, item in inner.uncertain():
            if isinstance(item.key, str):
                await store.transition(
                    item.key,
                    Event.UNCERTAIN,
                    error="the batch stopped while the create was in flight; it may or may not "
                    "have started a billed generation",
                )

    # ------------------------------------------------------------------ tasks

    async def _lease_loop(self) -> None:
        inner = self._inner
        assert inner is not None
        try:
            await self._feed()
        except Exception as exc:
            inner._runner.die(exc)
        finally:
            self._handover.close()
            self._fed_all = True

    async def _feed(self) -> None:
        """Lease jobs in rounds and hand them to the engine until none is left for this worker.

        A round is leased once the engine has taken the last one in; its size follows how
        fast the engine took the last (:func:`next_lease_size`), or is ``lease_batch`` after a
        round with inputs to create. When ``max_leased`` binds, the loop waits for a useful
        amount of room (a quarter of the cap, or a round) instead of leasing a job or two per
        store call as single results end their leases.
        """
        store, opts = self.store, self.store_options
        assert store is not None
        handover = self._handover
        size = opts.lease_batch
        while True:
            await handover.drained()
            useful = min(size, max(1, opts.max_leased // 4))
            room = opts.max_leased - len(self._held)
            if room < useful:
                if await self._nothing_left_for_me():
                    return
                await self._wait_room(useful, opts.idle_poll)
                room = opts.max_leased - len(self._held)
                if room <= 0:
                    continue
            count = min(room, size)
            items = await store.take_work(self.worker, count=count)
            if not items:
                items = await store.reclaim(self.worker, min_idle=opts.lease_seconds, count=count)
            if not items:
                if await self._nothing_left_for_me():
                    return
                await anyio.sleep(opts.idle_poll)
                continue
            fresh = []
            for item in items:
                if item.key in self._held:
                    # This worker's own lease, idle because its heartbeat came late (a stalled
                    # loop, a store outage): the reclaim renewed it; the job is already here.
                    self._held[item.key] = item
                    continue
                self._held[item.key] = item
                fresh.append(item)
            jobs = await _get_many(store, [item.key for item in fresh])
            given = handover.waiting
            for item, job in zip(fresh, jobs, strict=True):
                await self._hand_over(item, job)
            given = handover.waiting - given
            creates = any(job is not None and job.generation_id is None for job in jobs)
            if creates:
                # Creates stay in small rounds: the work stays spread over the workers.
                size = opts.lease_batch
            elif given:
                start = anyio.current_time()
                await handover.drained()
                size = next_lease_size(given, anyio.current_time() - start, opts.lease_batch)

    async def _nothing_left_for_me(self) -> bool:
        """Every unsettled job of the batch is one this worker holds (or none is left)."""
        assert self.store is not None
        counts = await self.store.counts()
        unsettled = sum(n for state, n in counts.items() if state.value in _UNSETTLED)
        return unsettled <= len(self._held)

    async def _hand_over(self, item: WorkItem, job: StoredJob | None) -> None:
        """Give one leased job (as the store knew it when leased) to the engine, or settle it
        from what the store knows."""
        from ..stores import Event, JobState

        store = self.store
        assert store is not None
        if job is None:
            await self._ack(item.key)
            return
        position = self._positions.get(item.key, job.seq - 1)
        request = coerce_request(job.request) if job.request is not None else None
        state = job.state
        if state in (JobState.PENDING, JobState.REFUSED) and request is not None:
            self._send(position, BatchItem(request=request, key=item.key))
        elif state is JobState.SUBMITTED and job.generation_id:
            self._send(
                position, BatchItem(request=request, generation_id=job.generation_id, key=item.key)
            )
        elif state is JobState.SUBMITTING:
            # Its worker stopped with the create in flight: it may have been billed.
            await store.transition(item.key, Event.ABANDONED)
            fresh = await store.get(item.key)
            self._side.append(_uncertain(position, request, item.key, fresh or job))
            await self._ack(item.key)
        else:
            self._side.append(_settled(position, request, item.key, job))
            await self._ack(item.key)

    def _send(self, position: int, item: BatchItem) -> None:
        self._sent.append(position)  # the engine takes the jobs in the order they are put
        self._handover.put(item)

    async def _heartbeat_loop(self) -> None:
        store, opts = self.store, self.store_options
        assert store is not None
        while True:
            await anyio.sleep(opts.lease_seconds / 3)
            held = list(self._held.values())
            try:
                lost = await store.heartbeat(self.worker, held)
            except Exception as exc:  # a store hiccup: the next beat tries again
                log.warning("renewing %d leases failed: %s", len(held), exc)
                continue
            for item in lost:
                if self._held.get(item.key) != item:
                    continue  # it ended here (acked) while the beat was on its way
                log.warning("job %s was taken over by another worker", item.key)
                self._drop(item.key)

    # ------------------------------------------------------------------ iteration

    def __aiter__(self) -> DurableBatch:
        return self

    async def __anext__(self) -> BatchResult:
        inner = self._inner
        if inner is None:
            raise RuntimeError("iterate a batch inside `async with client.batch(...) as batch:`")
        if self._side:
            return self._side.popleft()
        if self._ready:
            result = self._ready.popleft()
            if isinstance(result.key, str):
                self._unreturned.pop(result.key, None)
            return result
        try:
            result = await inner.__anext__()
        except StopAsyncIteration:
            if self._side:
                return self._side.popleft()
            raise
        results = [result]
        while len(results) < RECORD_BATCH and inner._runner.outbox.waiting() > 0:
            results.append(await inner.__anext__())
        for each in results:
            each.index = self._sent[each.index]
        await self._record(results)
        self._ready.extend(results[1:])
        return result

    async def _record(self, results: list[BatchResult]) -> None:
        """Write consumed results to the store and end their leases, all before the caller
        sees any of them (so a result is reported at most once across workers and runs).

        Results that were already waiting are recorded together, in one store call (Redis: one
        round trip for all of them). A caller that stops before it has seen them all gets the
        rest given back to the store on the way out (:meth:`_give_back_unreturned`), so a rerun
        or a peer reports them.
        """
        store = self.store
        assert store is not None
        changes: list[tuple[str, Event, dict[str, Any]]] = []
        for result in results:
            if isinstance(result.key, str):
                event, fields = _outcome(result)
                changes.append((result.key, event, fields))
        acks = self._take_leases(results)
        returned_now = results[0].key
        self._unreturned.update((item.key, item) for item in acks if item.key != returned_now)
        transition_many = getattr(store, "transition_many", None)
        if transition_many is not None:
            await transition_many(changes, worker=self.worker, ack=acks)
            return
        for key, event, fields in changes:
            await store.transition(key, event, **fields)
        if acks:
            await store.ack(self.worker, acks)

    def _take_leases(self, results: Iterable[BatchResult]) -> list[WorkItem]:
        """The leases that end with these results (a job still running keeps its lease until
        this worker stops: a later run resumes it)."""
        items = []
        for result in results:
            key = result.key
            if not isinstance(key, str) or isinstance(result.error, WaitTimeoutError):
                continue
            item = self._drop(key)
            if item is not None:
                items.append(item)
        return items

    async def _give_back_unreturned(self) -> None:
        """The caller stopped with recorded results it never saw, or jobs leased that never
        reached the engine: give their leases back to the store (where it can: ``release``),
        so a rerun or a peer takes them at once instead of after ``lease_seconds``."""
        items, self._unreturned = list(self._unreturned.values()), {}
        self._ready.clear()
        for untaken in self._handover.take_back():
            lease = self._drop(untaken.key) if isinstance(untaken.key, str) else None
            if lease is not None:
                items.append(lease)
        release = getattr(self.store, "release", None)
        if items and release is not None:
            await release(self.worker, items)

    # ------------------------------------------------------------------ public state

    @property
    def policy(self) -> PollPolicy:
        """The poll policy this batch plans with (known once entered)."""
        if self._inner is None:
            return self.options.poll_policy or self._api.poll_policy
        return self._inner.policy

    @property
    def batch_id(self) -> str | None:
        """The batch's id in the store (known once entered)."""
        return self.store.batch_id if self.store is not None else None

    @property
    def counts(self) -> BatchCounts:
        """This worker's live counters (the whole batch: ``await batch.store.counts()``)."""
        if self._inner is None:
            return BatchCounts()
        return self._inner.counts

    def pending(self) -> list[PendingJob]:
        """This worker's submitted jobs whose result was not consumed (indexes are input
        positions); they stay in the store and a later run tracks them."""
        if self._inner is None:
            return []
        return [replace(p, index=self.position(p.index)) for p in self._inner.pending()]

    def unsubmitted(self) -> list[tuple[int, BatchItem]]:
        """Inputs this worker read but did not submit (they are pending again in the store)."""
        if self._inner is None:
            return []
        return [(self.position(i), item) for i, item in self._inner.unsubmitted()]

    def uncertain(self) -> list[tuple[int, BatchItem]]:
        """Inputs of this worker whose create may or may not have started a generation."""
        if self._inner is None:
            return []
        return [(self.position(i), item) for i, item in self._inner.uncertain()]

    @property
    def stop_reason(self) -> str | None:
        """Why this worker stopped submitting early, if it did (see :class:`Batch`)."""
        return self._inner.stop_reason if self._inner is not None else None


def _outcome(result: BatchResult) -> tuple[Event, dict[str, Any]]:
    """The store event (and its fields) that records a consumed result."""
    error = result.error
    if result.generation_id is None:
        event = Event.UNCERTAIN if isinstance(error, CreateOutcomeUnknownError) else Event.REFUSED
        return event, {"error": str(error)}
    if isinstance(error, WaitTimeoutError):
        return Event.STILL_RUNNING, {"generation_id": result.generation_id, "error": str(error)}
    generation = result.generation
    return Event.FINISHED, {
        "generation_id": result.generation_id,
        "status": str(generation.status) if generation is not None else None,
        "video_url": generation.video_url if generation is not None else None,
        "credits": sane_credits(generation) if generation is not None else None,
        "error": str(error) if error is not None else None,
    }


async def _get_many(store: JobStore, keys: list[str]) -> list[StoredJob | None]:
    """The jobs of ``keys`` in one store call where the store offers ``get_many`` (both
    built-in stores do), else one :meth:`~veo_async.stores.JobStore.get` each."""
    if not keys:
        return []
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        jobs: list[StoredJob | None] = await get_many(keys)
        return jobs
    return [await store.get(key) for key in keys]


def stored_generation(job: StoredJob) -> Generation | None:
    """The generation a stored job describes (its id, status and video URL), or ``None``."""
    if job.generation_id is None:
        return None
    status = job.status or ("completed" if job.video_url else "error")
    body: dict[str, Any] = {"id": job.generation_id, "status": GenerationStatus(status)}
    if job.video_url:
        body["video"] = {"url": job.video_url}
    return Generation.model_validate(body)


def _uncertain(
    position: int, request: VideoRequest | None, key: str, job: StoredJob
) -> BatchResult:
    why = job.error or (
        "its worker stopped while the create request was in flight; it may or may not have "
        "started a billed generation"
    )
    error = CreateOutcomeUnknownError(
        f"{why}; resubmit only if a possible duplicate is acceptable",
        request=request,
    )
    return BatchResult(position, request, key, error=error, finished_at=time.time())


def _settled(position: int, request: VideoRequest | None, key: str, job: StoredJob) -> BatchResult:
    """A job that ended before this run (its worker died before ending the lease)."""
    from .._exceptions import GenerationFailedError
    from ..stores import JobState

    if job.state is JobState.UNCERTAIN:
        return _uncertain(position, request, key, job)
    generation = stored_generation(job)
    error = None
    if job.state is JobState.FAILED and generation is not None:
        error = GenerationFailedError(
            f"generation {job.generation_id} (input {position}) failed: {job.error}",
            generation=generation,
        )
    return BatchResult(
        position,
        request,
        key,
        generation_id=job.generation_id,
        generation=generation,
        error=error,
        submitted_at=job.submitted_at,
        finished_at=job.finished_at,
    )
