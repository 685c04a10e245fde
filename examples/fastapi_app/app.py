"""A FastAPI service in front of veo-async: the way to use the SDK in a backend.

Run it against the local emulator (see ``README.md`` next to this file)::

    veo-async emulator --port 8765 &
    AIMLAPI_BASE_URL=http://127.0.0.1:8765 AIMLAPI_KEY=anything \\
        uvicorn examples.fastapi_app.app:app

Endpoints:

* ``POST /videos``: validate, submit, answer ``202`` with the generation id at once.
* ``GET /videos/{id}``: one status poll.
* ``GET /videos/{id}/events``: server-sent events, one per status change, until the video is
  ready (the final ``completed`` event carries its URL) or ``failed``; then the stream ends.
* ``POST /batches`` / ``GET /batches/{id}``: many prompts run in the background by the SDK's
  batch engine; progress counters and the results so far.
* ``GET /healthz``: open event streams and running batches.
* With a job store (``VEO_STORE_URL=redis://host:port/db``): ``POST /videos`` also records the
  job (its intent before the create, its generation id before the reply) and answers with its
  ``job`` key; ``GET /jobs/{job}`` reads it from the store and ``GET /jobs/{job}/wait`` waits
  for it to finish, through *any* worker or replica. ``VEO_SHARED_RATE`` adds a request budget
  shared by every worker on the same Redis.

What it shows:

* **One client for the app's lifetime.** The lifespan opens one :class:`AsyncVeoClient`
  (its connection pool, its rate governor, its learning poll policy are shared by every
  request) and closes it on shutdown. ``create_app(client_factory=...)`` lets tests inject one.
* **Structured background work.** Batches run in a task group the lifespan owns: no orphan
  ``asyncio.create_task``; on shutdown the group is cancelled and the client closed after it.
* **Validation before money.** Request bodies are validated by the SDK's request models
  (``build_request``) before anything is sent; errors come back as ``422`` naming each field.
* **Honest error mapping** (:func:`error_response`): rate limited -> ``429`` with
  ``Retry-After``; a create of unknown outcome -> ``502`` saying it was *not* retried (a retry
  could pay twice); a rejected key -> ``500`` with no detail; timeouts -> ``504``.
* **The key is never logged or returned.** The app never reads it; the SDK keeps it in a
  ``SecretStr`` and its errors never contain it.
* **Several workers, one truth.** With a store, a worker that dies (or restarts) forgets
  nothing: the jobs it submitted are in Redis and any other worker answers their waits.
* **Event streams stop when the client leaves.** :class:`EventStreamResponse` watches for the
  disconnect and cancels the polling loop at once, instead of noticing at the next write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
from anyio.abc import TaskGroup
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError as BodyValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from veo_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncVeoClient,
    AuthenticationError,
    BadRequestError,
    Batch,
    BatchCounts,
    BatchResult,
    ConfigurationError,
    CreateOutcomeUnknownError,
    Generation,
    GenerationFailedError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    VeoError,
    VideoRequest,
    WaitTimeoutError,
    build_request,
)
from veo_async.stores import Event, JobState, JobStore, SharedBudget, StoredJob, open_store

__all__ = [
    "ErrorAnswer",
    "EventStreamResponse",
    "Settings",
    "VideoService",
    "app",
    "create_app",
    "classify",
    "error_response",
]

logger = logging.getLogger("veo_async.examples.fastapi_app")

ClientFactory = Callable[[], AsyncVeoClient]
_DEFAULT_PRIOR = 45.0  # seconds a Veo2 clip typically takes, when the request is not known


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Service settings (``Settings.from_env()`` reads the ``VEO_EXAMPLE_*`` variables).

    The client's settings are not here: the SDK reads ``AIMLAPI_KEY``, ``AIMLAPI_BASE_URL``
    and ``VEO_ASYNC_TIME_SCALE`` (poll pace for a time-compressed emulator) itself, so the key
    never passes through the app's code.
    """

    batch_max_concurrency: int = 8
    """HTTP requests in flight per batch (a request may ask for fewer)."""
    max_batch_prompts: int = 100
    """The largest batch accepted."""
    max_running_batches: int = 4
    """Batches running at once; more are refused with 429."""
    max_kept_batches: int = 200
    """Finished batches remembered (oldest forgotten first)."""
    events_timeout: float = 1800.0
    """Seconds an event stream may last before it ends with a ``timeout`` event."""
    heartbeat: float = 15.0
    """Seconds of silence after which an event stream sends a keep-alive comment."""
    store_url: str | None = None
    """``VEO_STORE_URL``: a job store shared by every worker and replica (``redis://host:port/db``;
    ``sqlite:///path`` for one machine). ``None``: single-process, nothing recorded."""
    store_batch: str = "fastapi-jobs"
    """``VEO_STORE_BATCH``: the namespace of this service's jobs in the store."""
    shared_rate: float | None = None
    """``VEO_SHARED_RATE``: requests/s of the API key, shared by every worker through a
    :class:`~veo_async.stores.SharedBudget` on the same Redis (needs a ``redis://`` store)."""
    shared_budget_name: str = "fastapi-example"
    """``VEO_SHARED_BUDGET``: the name of that budget (one per API key)."""
    submitting_grace: float = 10.0
    """Seconds a wait gives a job found ``submitting`` (another worker's create in flight) to
    get its generation id before answering ``409``."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``VEO_EXAMPLE_BATCH_CONCURRENCY``, ``VEO_EXAMPLE_MAX_BATCH_PROMPTS``,
        ``VEO_STORE_URL``, ``VEO_STORE_BATCH``, ``VEO_SHARED_RATE`` and ``VEO_SHARED_BUDGET``."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def num(name: str, default: float) -> float:
            raw = env.get(name)
            return float(raw) if raw else default

        return cls(
            batch_max_concurrency=int(
                num("VEO_EXAMPLE_BATCH_CONCURRENCY", defaults.batch_max_concurrency)
            ),
            max_batch_prompts=int(num("VEO_EXAMPLE_MAX_BATCH_PROMPTS", defaults.max_batch_prompts)),
            store_url=env.get("VEO_STORE_URL") or None,
            store_batch=env.get("VEO_STORE_BATCH") or defaults.store_batch,
            shared_rate=float(env["VEO_SHARED_RATE"]) if env.get("VEO_SHARED_RATE") else None,
            shared_budget_name=env.get("VEO_SHARED_BUDGET") or defaults.shared_budget_name,
        )


# --------------------------------------------------------------------------- error mapping


@dataclass(frozen=True)
class ErrorAnswer:
    """How an SDK error is answered: status, a stable ``type``, a message, extra fields."""

    status: int
    kind: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    log_level: int = logging.WARNING

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"type", "message", ...}}``."""
        return _error_body(self.kind, self.message, **self.extra)


def _error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def classify(exc: VeoError) -> ErrorAnswer:
    """Map an SDK error to an HTTP answer a client of this service can act on (pure).

    Messages come from the SDK (status codes, paths, ids, server bodies: never the key), except
    for credential and account problems, which only the operator's log sees in full.
    """
    rid = {"request_id": exc.request_id} if exc.request_id else {}
    if isinstance(exc, RequestValidationError):
        return ErrorAnswer(422, "invalid_request", exc.message, {"fields": exc.errors}, {}, 0)
    if isinstance(exc, CreateOutcomeUnknownError):
        return ErrorAnswer(
            502,
            "create_outcome_unknown",
            "The video API gave no usable answer to the create request, so a billed "
            "generation may or may not have started. It was NOT retried, to avoid paying "
            "twice. Resubmit only if a possible duplicate is acceptable.",
            rid,
        )
    if isinstance(exc, RateLimitError):
        retry_after = max(1, math.ceil(exc.retry_after)) if exc.retry_after is not None else 5
        return ErrorAnswer(
            429,
            "rate_limited",
            "The video API is rate limiting this service; retry later.",
            rid,
            {"Retry-After": str(retry_after)},
        )
    if isinstance(exc, (AuthenticationError, ConfigurationError)):
        return ErrorAnswer(
            500,
            "misconfigured",
            "The video service is misconfigured; its operator has been told.",
            log_level=logging.ERROR,
        )
    if isinstance(exc, PermissionDeniedError):
        return ErrorAnswer(
            503,
            "upstream_refused",
            "The video API refused the request (out of credits?).",
            rid,
            log_level=logging.ERROR,
        )
    if isinstance(exc, NotFoundError) and exc.method == "GET":
        return ErrorAnswer(404, "not_found", "No generation with this id.", rid, {}, 0)
    if isinstance(exc, BadRequestError):
        message = exc.server_message or "The video API rejected the request."
        if exc.method == "GET":
            return ErrorAnswer(400, "bad_request", message, rid)
        return ErrorAnswer(422, "rejected_by_provider", message, {"details": exc.details, **rid})
    if isinstance(exc, GenerationFailedError):
        return ErrorAnswer(502, "generation_failed", str(exc), {"generation_id": exc.generation_id})
    if isinstance(exc, (APITimeoutError, WaitTimeoutError)):
        return ErrorAnswer(504, "upstream_timeout", str(exc), rid)
    if isinstance(exc, (APIConnectionError, ServerError, InvalidResponseError, APIStatusError)):
        return ErrorAnswer(502, "upstream_error", str(exc), rid)
    return ErrorAnswer(500, "error", str(exc), rid, log_level=logging.ERROR)


def error_response(exc: VeoError) -> JSONResponse:
    """The HTTP answer to an SDK error raised while handling a request (logged, key-free)."""
    answer = classify(exc)
    if answer.log_level:
        logger.log(answer.log_level, "%s -> %d: %s", type(exc).__name__, answer.status, exc)
    return JSONResponse(answer.body(), status_code=answer.status, headers=dict(answer.headers))


def _public_error(exc: BaseException) -> dict[str, Any]:
    """A per-item error as shown in batch results and events (what the HTTP answer would be)."""
    if isinstance(exc, VeoError):
        answer = classify(exc)
        return {**answer.body()["error"], "http_status": answer.status}
    return {"type": "internal", "message": type(exc).__name__, "http_status": 500}


# --------------------------------------------------------------------------- request bodies


class VideoIn(BaseModel):
    """A video to generate: ``prompt``, ``model`` (default ``veo2``) and the model's fields.

    Any other field (``duration``, ``aspect_ratio``, ``negative_prompt``, ``seed``,
    ``image_url``, ...) is validated by the SDK's model for ``model``.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"prompt": "a red fox in fresh snow", "duration": 5}],
        },
    )

    prompt: str
    """What to generate."""
    model: str = "veo2"
    """Model id, e.g. ``veo2`` or ``google/veo-3.1-t2v``."""


class BatchIn(BaseModel):
    """A batch: prompts (strings or ``VideoIn``-like objects) and shared defaults."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str | dict[str, Any]] = Field(min_length=1)
    """The inputs: a prompt string, or an object with ``prompt`` and model fields."""
    model: str = "veo2"
    """Model of every input that does not name one."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Fields applied to every input (an input's own fields win), e.g. ``{"duration": 5}``."""
    max_concurrency: int | None = Field(default=None, ge=1, le=64)
    """HTTP requests in flight for this batch (capped by the service's setting)."""


def _build(
    prompt: object, model: object, fields: Mapping[str, Any], prefix: str = ""
) -> VideoRequest:
    """Validate one input with the SDK's request models (nothing is sent)."""
    if "extra_body" in fields:
        # build_request(extra_body=...) sends arbitrary fields unvalidated: not for callers.
        raise RequestValidationError(
            f"{prefix}extra_body: not accepted",
            errors=[{"field": f"{prefix}extra_body", "message": "not accepted by this service"}],
        )
    if not isinstance(prompt, str) or not isinstance(model, str):
        bad = "prompt" if not isinstance(prompt, str) else "model"
        raise RequestValidationError(
            f"{prefix}{bad}: must be a string",
            errors=[{"field": f"{prefix}{bad}", "message": "must be a string"}],
        )
    try:
        return build_request(prompt, model=model, **fields)
    except RequestValidationError as exc:
        if not prefix:
            raise
        errors = [{**e, "field": f"{prefix}{e.get('field', '')}"} for e in exc.errors]
        raise RequestValidationError(
            f"{prefix.rstrip('.')}: {exc.message}", errors=errors
        ) from None


# --------------------------------------------------------------------------- views


def video_view(generation: Generation) -> dict[str, Any]:
    """What this service says about a generation."""
    return {
        "id": generation.id,
        "status": str(generation.status),
        "done": generation.is_terminal,
        "video_url": generation.video_url,
        "error": generation.error_message if generation.failed else None,
        "credits_used": generation.credits_used,
    }


_JOB_DONE = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.DOWNLOADED})


def job_view(job: StoredJob) -> dict[str, Any]:
    """What this service says about a job recorded in the store."""
    return {
        "job": job.key,
        "state": str(job.state),
        "done": job.state in _JOB_DONE,
        "id": job.generation_id,
        "status": job.status,
        "video_url": job.video_url,
        "error": job.error,
        "credits_used": job.credits,
    }


def _result_view(result: BatchResult) -> dict[str, Any]:
    generation = result.generation
    return {
        "index": result.index,
        "prompt": result.request.prompt if result.request is not None else None,
        "ok": result.ok,
        "generation_id": result.generation_id,
        "status": str(generation.status) if generation is not None else None,
        "video_url": generation.video_url if generation is not None else None,
        "error": _public_error(result.error) if result.error is not None else None,
    }


# --------------------------------------------------------------------------- batches


BatchState = Literal["running", "completed", "failed", "cancelled"]


@dataclass
class BatchRecord:
    """One batch this service runs: its inputs, live engine, results so far and outcome."""

    id: str
    requests: list[VideoRequest]
    max_concurrency: int
    created_at: float = field(default_factory=time.time)
    state: BatchState = "running"
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    results: dict[int, BatchResult] = field(default_factory=dict)
    batch: Batch | None = None
    final_counts: BatchCounts | None = None
    stop_reason: str | None = None

    def view(self) -> dict[str, Any]:
        """The JSON answer of ``GET /batches/{id}``."""
        counts = self.final_counts
        if counts is None and self.batch is not None:
            counts = self.batch.counts
        finished = len(self.results)
        succeeded = sum(1 for r in self.results.values() if r.ok)
        return {
            "id": self.id,
            "state": self.state,
            "total": len(self.requests),
            "progress": {
                "finished": finished,
                "succeeded": succeeded,
                "failed": finished - succeeded,
                "remaining": len(self.requests) - finished,
            },
            "counts": dataclasses.asdict(counts) if counts is not None else None,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "results": [_result_view(self.results[i]) for i in sorted(self.results)],
        }


# --------------------------------------------------------------------------- the service


class VideoService:
    """What the app holds for its lifetime: the client, the task group, batches, streams."""

    def __init__(
        self,
        client: AsyncVeoClient,
        task_group: TaskGroup,
        settings: Settings,
        store: JobStore | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        #: The job store every worker shares (``VEO_STORE_URL``), or ``None``.
        self.store = store
        #: This worker's name in the store (who took a job's intent).
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._tg = task_group
        self.batches: OrderedDict[str, BatchRecord] = OrderedDict()
        #: id -> (monotonic time of the create, expected seconds): lets an event stream opened
        #: late poll on the job's schedule instead of starting the clock again.
        self._submitted: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.event_streams = 0

    # -- single videos

    def remember(self, generation_id: str, request: VideoRequest) -> None:
        """Note when a generation was created and how long it should take."""
        self._submitted[generation_id] = (time.monotonic(), request.expected_seconds())
        while len(self._submitted) > 10_000:
            self._submitted.popitem(last=False)

    async def submit(self, request: VideoRequest) -> tuple[Generation, str | None]:
        """Submit one video; with a store, record the job there so any worker can await it.

        The job (a fresh key) is added and its intent taken *before* the create is sent, and
        the generation id is recorded before this returns (so before the reply): a worker
        that dies afterwards loses nothing. A create of unknown outcome is recorded as
        ``uncertain``, a refused one as ``refused``. Returns the generation and the job key
        (``None`` without a store).
        """
        store = self.store
        if store is None:
            generation = await self.client.submit(request)
            self.remember(generation.id, request)
            return generation, None
        key = "job-" + uuid.uuid4().hex
        await store.add_inputs([(key, request.to_body())])
        if not await store.claim_intent(key, self.worker):  # a fresh key: cannot happen
            raise RuntimeError(f"job {key} was claimed by another worker")
        try:
            generation = await self.client.submit(request)
        except CreateOutcomeUnknownError as exc:
            with anyio.CancelScope(shield=True):
                await store.transition(key, Event.UNCERTAIN, error=str(exc))
            raise
        except VeoError as exc:
            with anyio.CancelScope(shield=True):
                await store.transition(key, Event.REFUSED, error=str(exc))
            raise
        with anyio.CancelScope(shield=True):  # paid for: the id must reach the store
            await store.transition(
                key, Event.SUBMITTED, generation_id=generation.id, status=str(generation.status)
            )
        self.remember(generation.id, request)
        return generation, key

    async def wait_job(self, key: str, timeout: float) -> StoredJob | None:
        """Wait for job ``key`` (submitted through any worker) to finish; ``None``: unknown.

        Reads the store for the generation id and polls the generation until it ends (a job
        the store already knows finished is answered from the store). A job still
        ``submitting`` (another worker's create in flight) gets ``submitting_grace`` seconds
        to receive its id. Records the outcome in the store and returns the job as stored;
        a job that never got an id (``uncertain``, ``refused``) is returned as it is.
        """
        store = self.store
        assert store is not None
        job = await store.get(key)
        grace_ends = time.monotonic() + self.settings.submitting_grace
        while job is not None and job.state is JobState.SUBMITTING:
            if time.monotonic() >= grace_ends:
                break
            await anyio.sleep(0.2)
            job = await store.get(key)
        if job is None or job.state in _JOB_DONE or job.generation_id is None:
            return job
        generation = await self.client.wait(
            job.generation_id, timeout=timeout, raise_on_failure=False
        )
        with anyio.CancelScope(shield=True):
            await store.transition(
                key,
                Event.FINISHED,
                generation_id=generation.id,
                status=str(generation.status),
                video_url=generation.video_url,
                credits=generation.credits_used,
                error=generation.error_message if generation.failed else None,
            )
            finished = await store.get(key)
        return finished

    async def video_events(self, first: Generation) -> AsyncGenerator[str, None]:
        """Server-sent events for one generation, starting from an already polled state.

        Polls on the client's poll policy (as ``client.wait`` does) and sends an event per
        status change; the last event is ``completed`` (with ``video_url``), ``failed``,
        ``error`` (the polling itself failed) or ``timeout``. Written as a plain loop, with no
        task group or cancel scope open across a ``yield``, so the response can cancel it.
        """
        client, settings = self.client, self.settings
        policy = client.poll_policy
        gid = first.id
        anchor, prior = self._submitted.get(gid, (None, _DEFAULT_PRIOR))
        known_start = anchor is not None
        start = anchor if anchor is not None else time.monotonic()
        deadline = time.monotonic() + settings.events_timeout
        self.event_streams += 1
        seq = 0
        try:
            last = first
            polls = 1
            if not last.is_terminal:
                yield _sse("status", video_view(last), seq)
            while not last.is_terminal:
                now = time.monotonic()
                delay = min(policy.next_delay(now - start, prior, polls), deadline - now)
                while delay > settings.heartbeat:
                    await anyio.sleep(settings.heartbeat)
                    delay -= settings.heartbeat
                    yield ": keep-alive\n\n"
                await anyio.sleep(max(delay, 0.0))
                if time.monotonic() >= deadline:
                    seq += 1
                    yield _sse(
                        "timeout",
                        {**video_view(last), "after_seconds": settings.events_timeout},
                        seq,
                    )
                    return
                try:
                    current = await client.get(gid)
                except VeoError as exc:
                    logger.warning("event stream for %s: polling failed: %s", gid, exc)
                    seq += 1
                    yield _sse("error", {"id": gid, **_public_error(exc)}, seq)
                    return
                polls += 1
                if current.status != last.status and not current.is_terminal:
                    seq += 1
                    yield _sse("status", video_view(current), seq)
                last = current
                if last.succeeded and known_start:
                    policy.observe(time.monotonic() - start, prior)
            seq += 1
            yield _sse("completed" if last.succeeded else "failed", video_view(last), seq)
        finally:
            self.event_streams -= 1

    # -- batches

    @property
    def running_batches(self) -> int:
        """How many batches are running now."""
        return sum(1 for b in self.batches.values() if b.state == "running")

    def start_batch(self, requests: list[VideoRequest], max_concurrency: int | None) -> BatchRecord:
        """Register a batch and start it in the app's task group."""
        limit = self.settings.batch_max_concurrency
        record = BatchRecord(
            id=uuid.uuid4().hex,
            requests=requests,
            max_concurrency=min(max_concurrency or limit, limit),
        )
        self.batches[record.id] = record
        finished = [k for k, b in self.batches.items() if b.state != "running"]
        for key in finished[: max(0, len(self.batches) - self.settings.max_kept_batches)]:
            del self.batches[key]
        self._tg.start_soon(self._run_batch, record, name=f"batch {record.id}")
        return record

    async def _run_batch(self, record: BatchRecord) -> None:
        """Run one batch to the end. Never raises (except cancellation): it must not take the
        app's task group, and so the app, down with it."""
        batch: Batch | None = None
        try:
            async with self.client.batch(
                record.requests, max_concurrency=record.max_concurrency
            ) as batch:
                record.batch = batch
                async for result in batch:
                    record.results[result.index] = result
            record.state = "completed"
        except anyio.get_cancelled_exc_class():
            record.state = "cancelled"
            raise
        except Exception as exc:
            cause = _first_sdk_error(exc)
            record.state = "failed"
            record.error = _public_error(cause)
            logger.warning("batch %s stopped: %s: %s", record.id, type(cause).__name__, cause)
        finally:
            record.finished_at = time.time()
            if batch is not None:
                record.final_counts = dataclasses.replace(batch.counts)
                record.stop_reason = batch.stop_reason
            record.batch = None


def _first_sdk_error(exc: BaseException) -> BaseException:
    """The first :class:`VeoError` inside ``exc`` (which may be an exception group), else
    ``exc``: the batch's fatal error may reach us wrapped by a task group."""
    stack = [exc]
    while stack:
        current = stack.pop(0)
        if isinstance(current, VeoError):
            return current
        stack.extend(getattr(current, "exceptions", ()))
    return exc


def _sse(event: str, data: Mapping[str, Any], event_id: int) -> str:
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {payload}\n\n"


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that stops its producer when the client disconnects.

    Starlette's ``StreamingResponse`` watches for the disconnect only under ASGI < 2.4; on
    newer servers it notices only when a write fails, which for a stream that polls every few
    seconds means polling on for nobody. This one always watches, cancels the producer at once
    and closes the generator (its ``finally`` runs) before returning.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[str, None]) -> None:
        super().__init__(
            events,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def produce() -> None:
                    with contextlib.suppress(OSError):  # the client went away mid-write
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                tg.start_soon(produce)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()


# --------------------------------------------------------------------------- the app


def _service(request: Request) -> VideoService:
    service = getattr(request.app.state, "service", None)
    if not isinstance(service, VideoService):
        raise RuntimeError("the app's lifespan did not run")
    return service


ServiceDep = Annotated[VideoService, Depends(_service)]
GenerationId = Annotated[str, Path(min_length=1, max_length=200)]
JobKey = Annotated[str, Path(pattern=r"^job-[0-9a-f]{32}$")]


def _no_store() -> JSONResponse:
    return JSONResponse(
        _error_body("no_store", "This service runs without a job store (set VEO_STORE_URL)."),
        status_code=404,
    )


def create_app(
    client_factory: ClientFactory | None = None, *, settings: Settings | None = None
) -> FastAPI:
    """Build the app. ``client_factory`` makes the one client; the default,
    ``AsyncVeoClient``, is configured from the environment (``AIMLAPI_KEY``,
    ``AIMLAPI_BASE_URL``, ``VEO_ASYNC_TIME_SCALE``).
    """
    cfg = settings if settings is not None else Settings.from_env()
    factory: ClientFactory = client_factory or AsyncVeoClient

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            store: JobStore | None = None
            make_client: ClientFactory = factory
            if cfg.store_url:
                store = await open_store(cfg.store_url, batch_id=cfg.store_batch)
                stack.push_async_callback(store.aclose)
                if cfg.shared_rate and client_factory is None:
                    budget = await SharedBudget.open(
                        cfg.store_url, name=cfg.shared_budget_name, rate=cfg.shared_rate
                    )
                    stack.push_async_callback(budget.aclose)
                    make_client = functools.partial(AsyncVeoClient, shared_budget=budget)

            client = make_client()
            async with client, anyio.create_task_group() as tg:
                app.state.service = VideoService(client, tg, cfg, store)
                logger.info("video service up: %r", client)  # the repr masks the key
                try:
                    yield
                finally:
                    # stop running batches first; the client closes after the group is done
                    tg.cancel_scope.cancel()
                    del app.state.service

    app = FastAPI(
        title="veo-async example service",
        summary="Generate Google Veo videos through the AI/ML API with veo-async.",
        lifespan=lifespan,
    )

    @app.exception_handler(VeoError)
    async def _on_sdk_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VeoError)
        return error_response(exc)

    @app.exception_handler(BodyValidationError)
    async def _on_bad_body(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BodyValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
                "message": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(_error_body("invalid_request", message, fields=errors), status_code=422)

    @app.post("/videos", status_code=202)
    async def create_video(body: VideoIn, service: ServiceDep) -> JSONResponse:
        """Validate and submit one video; answers at once with the generation id."""
        request = _build(body.prompt, body.model, body.model_extra or {})
        generation, job = await service.submit(request)
        view = video_view(generation)
        view["links"] = {
            "self": f"/videos/{generation.id}",
            "events": f"/videos/{generation.id}/events",
        }
        if job is not None:  # recorded in the store: any worker can answer these
            view["job"] = job
            view["links"].update(job=f"/jobs/{job}", wait=f"/jobs/{job}/wait")
        return JSONResponse(view, status_code=202, headers={"Location": view["links"]["self"]})

    @app.get("/jobs/{job}")
    async def get_job(job: JobKey, service: ServiceDep) -> JSONResponse:
        """A job as the shared store records it (any worker answers; nothing is polled)."""
        if service.store is None:
            return _no_store()
        stored = await service.store.get(job)
        if stored is None:
            return JSONResponse(_error_body("not_found", "No job with this key."), status_code=404)
        return JSONResponse(job_view(stored))

    @app.get("/jobs/{job}/wait")
    async def wait_job(
        job: JobKey,
        service: ServiceDep,
        timeout: Annotated[float, Query(gt=0, le=3600)] = 600.0,
    ) -> JSONResponse:
        """Wait until the job, submitted through any worker, is finished; answers with the
        job (``state`` ``completed`` with ``video_url``, or ``failed``). A job that never
        got a generation id (``uncertain``, ``refused``, still ``submitting``) is a ``409``
        with its state; waiting longer than ``timeout`` is a ``504`` (wait again)."""
        if service.store is None:
            return _no_store()
        stored = await service.wait_job(job, timeout)
        if stored is None:
            return JSONResponse(_error_body("not_found", "No job with this key."), status_code=404)
        if stored.generation_id is None:
            return JSONResponse(
                _error_body(
                    "job_not_submitted",
                    f"The job has no generation to wait for (state {stored.state}).",
                    job=job_view(stored),
                ),
                status_code=409,
            )
        return JSONResponse(job_view(stored))

    @app.get("/videos/{generation_id}")
    async def get_video(generation_id: GenerationId, service: ServiceDep) -> dict[str, Any]:
        """The generation's status now (one poll)."""
        return video_view(await service.client.get(generation_id))

    @app.get("/videos/{generation_id}/events", response_class=EventStreamResponse)
    async def video_events(generation_id: GenerationId, service: ServiceDep) -> EventStreamResponse:
        """Server-sent events until the video is ready or failed (``event: completed`` /
        ``failed`` last). Unknown ids get a plain 404, before the stream starts."""
        first = await service.client.get(generation_id)
        return EventStreamResponse(service.video_events(first))

    @app.post("/batches", status_code=202)
    async def create_batch(body: BatchIn, service: ServiceDep) -> JSONResponse:
        """Validate every input, then run the batch in the background; answers with its id."""
        limit = service.settings.max_batch_prompts
        if len(body.prompts) > limit:
            raise RequestValidationError(
                f"prompts: at most {limit} per batch",
                errors=[{"field": "prompts", "message": f"at most {limit} per batch"}],
            )
        requests: list[VideoRequest] = []
        errors: list[dict[str, Any]] = []
        if {"prompt", "model"} & body.options.keys():
            errors.append(
                {"field": "options", "message": "set the model with `model`, prompts per input"}
            )
        for i, item in enumerate(body.prompts):
            fields = {**body.options, **({"prompt": item} if isinstance(item, str) else item)}
            prompt = fields.pop("prompt", None)
            model = fields.pop("model", body.model)
            try:
                requests.append(_build(prompt, model, fields, prefix=f"prompts[{i}]."))
            except RequestValidationError as exc:
                errors.extend(exc.errors)
        if errors:
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
            raise RequestValidationError(f"invalid batch: {summary}", errors=errors)
        if service.running_batches >= service.settings.max_running_batches:
            return JSONResponse(
                _error_body("too_many_batches", "Too many batches running; retry later."),
                status_code=429,
                headers={"Retry-After": "10"},
            )
        record = service.start_batch(requests, body.max_concurrency)
        return JSONResponse(
            {"id": record.id, "state": record.state, "total": len(requests)},
            status_code=202,
            headers={"Location": f"/batches/{record.id}"},
        )

    @app.get("/batches/{batch_id}")
    async def get_batch(batch_id: str, service: ServiceDep) -> JSONResponse:
        """A batch's progress and its results so far (in input order)."""
        record = service.batches.get(batch_id)
        if record is None:
            return JSONResponse(_error_body("not_found", "No batch with this id."), status_code=404)
        return JSONResponse(record.view())

    @app.get("/healthz")
    async def health(service: ServiceDep) -> dict[str, Any]:
        """Liveness, open event streams and running batches."""
        return {
            "ok": True,
            "event_streams": service.event_streams,
            "running_batches": service.running_batches,
        }

    return app


#: The app for ``uvicorn examples.fastapi_app.app:app`` (configured from the environment).
app = create_app()
