"""The job store seam: what a durable batch remembers, and the rules for changing it.

A store holds one or more *batches* (``batch_id`` namespaces everything, so two batches with
different inputs on one store never see each other's jobs). Each input of a batch is a *job*,
keyed by the SHA-256 of its canonical request body (:func:`input_key`), never by its position
in a file, so processes started with the same inputs agree on every key. A job moves through
the same states as the CLI journal's inputs::

    pending ──intent──▶ submitting ──id──▶ submitted ──▶ completed ──▶ downloaded
                            │                  │
                            │                  └──▶ failed
                            ├──▶ refused    (the create was rejected: nothing was created)
                            ├──▶ uncertain  (the create's outcome is unknown)
                            └──▶ pending    (not sent after all)

The step ``pending -> submitting`` (:meth:`JobStore.claim_intent`) is the one that spends
money: it is atomic and exactly one caller wins it, whatever the number of workers. It is
durably recorded *before* the create request is sent. Every other step is one
:meth:`JobStore.transition` with an :class:`Event`; the table :data:`TRANSITIONS` says which
states each event may leave (a late or stale worker's write is refused, not applied).

Work is handed out separately from state: :meth:`JobStore.take_work` gives a worker
:class:`WorkItem` leases (a Redis Stream entry in a consumer group, a row in SQLite), the
worker renews them with :meth:`JobStore.heartbeat` while it submits and polls, and
:meth:`JobStore.ack` ends them once the job is finished. :meth:`JobStore.reclaim` takes over
the leases of a worker that stopped renewing (it died): the job's *state* then says what to
do (pending: submit; submitted: poll the id; submitting: the dead worker may have sent the
create, so :data:`Event.ABANDONED` marks it uncertain).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._exceptions import VeoError
from .._journal_records import JournalState

__all__ = [
    "TRANSITIONS",
    "Event",
    "JobState",
    "JobStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredJob",
    "Transition",
    "WorkItem",
    "batch_fingerprint",
    "input_key",
    "input_keys",
    "plan_transition",
    "redact_url",
    "validate_batch_id",
]


class StoreError(VeoError):
    """A job store cannot do what was asked (unknown job, bad batch id, corrupt data)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (Redis down, wrong host or port): nothing was submitted.

    ``url`` is the store's URL with any password removed.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


#: Where one job stands: the same states as the CLI journal's (one vocabulary for both
#: durable records); see the module docstring for the moves.
JobState = JournalState


class Event(str, enum.Enum):
    """A step of a job, applied with :meth:`JobStore.transition` (see :data:`TRANSITIONS`)."""

    NOT_SENT = "not_sent"
    """The create was never sent after all (cancelled before it left): back to pending."""
    SUBMITTED = "submitted"
    """The create returned ``generation_id`` (also accepted from ``uncertain``: the id wins)."""
    UNCERTAIN = "uncertain"
    """The create may or may not have started a billed generation."""
    ABANDONED = "abandoned"
    """Found ``submitting`` with its worker gone (crash, takeover): now uncertain."""
    REFUSED = "refused"
    """The create was rejected; nothing was created (safe to submit again)."""
    FINISHED = "finished"
    """The generation ended: ``completed`` when it has a ``video_url`` and no error, else
    ``failed``."""
    STILL_RUNNING = "still_running"
    """Waiting ran out of time; the id stays tracked."""
    DOWNLOADED = "downloaded"
    """The video is on disk (``file``, ``sha256``, ``size``)."""
    DOWNLOAD_FAILED = "download_failed"
    """The download failed; the next run tries again."""
    FILE_LOST = "file_lost"
    """A downloaded file is missing or damaged: download it again."""
    RESET = "reset"
    """Make the job submittable again (resubmit uncertain, retry failed); the old id is kept
    in ``previous_ids``."""


@dataclass(frozen=True)
class Transition:
    """One row of :data:`TRANSITIONS`: where an event may start, where it goes, what it sets."""

    sources: frozenset[JobState]
    target: JobState | None  # None: decided from the fields (FINISHED)
    fields: frozenset[str]
    stamp: str | None = None  # the timestamp column set to the store's clock
    clears: frozenset[str] = frozenset()


_AFTER_SEND = frozenset({JobState.SUBMITTING, JobState.UNCERTAIN})
_RUNNING = frozenset({JobState.SUBMITTED, JobState.UNCERTAIN})

TRANSITIONS: Mapping[Event, Transition] = {
    Event.NOT_SENT: Transition(frozenset({JobState.SUBMITTING}), JobState.PENDING, frozenset()),
    Event.SUBMITTED: Transition(
        _AFTER_SEND, JobState.SUBMITTED, frozenset({"generation_id", "status"}), "submitted_at"
    ),
    Event.UNCERTAIN: Transition(
        frozenset({JobState.SUBMITTING}), JobState.UNCERTAIN, frozenset({"error"})
    ),
    Event.ABANDONED: Transition(
        frozenset({JobState.SUBMITTING}), JobState.UNCERTAIN, frozenset({"error"})
    ),
    Event.REFUSED: Transition(
        frozenset({JobState.SUBMITTING}), JobState.REFUSED, frozenset({"error"})
    ),
    Event.FINISHED: Transition(
        _RUNNING | {JobState.COMPLETED, JobState.FAILED},
        None,
        frozenset({"generation_id", "status", "video_url", "credits", "error"}),
        "finished_at",
    ),
    Event.STILL_RUNNING: Transition(
        _RUNNING, JobState.SUBMITTED, frozenset({"generation_id", "error"})
    ),
    Event.DOWNLOADED: Transition(
        frozenset({JobState.COMPLETED}),
        JobState.DOWNLOADED,
        frozenset({"file", "sha256", "size"}),
        "downloaded_at",
        clears=frozenset({"error"}),
    ),
    Event.DOWNLOAD_FAILED: Transition(
        frozenset({JobState.COMPLETED}), JobState.COMPLETED, frozenset({"error"})
    ),
    Event.FILE_LOST: Transition(
        frozenset({JobState.COMPLETED, JobState.DOWNLOADED}),
        JobState.COMPLETED,
        frozenset({"error"}),
        clears=frozenset({"file", "sha256", "size"}),
    ),
    Event.RESET: Transition(
        frozenset(
            {
                JobState.UNCERTAIN,
                JobState.REFUSED,
                JobState.FAILED,
                JobState.SUBMITTED,
                JobState.COMPLETED,
            }
        ),
        JobState.PENDING,
        frozenset(),
        clears=frozenset(
            {"generation_id", "status", "video_url", "credits", "error", "owner", "claim_token"}
        ),
    ),
}
"""Every step a job may take besides the intent: the states it may start from, its target."""

_DEFAULT_ERRORS = {
    Event.ABANDONED: "the worker stopped while the create request was in flight; it may or "
    "may not have started a billed generation",
}


def plan_transition(
    event: Event, fields: Mapping[str, Any]
) -> tuple[frozenset[JobState], JobState, dict[str, Any], Transition]:
    """Check ``fields`` for ``event`` and decide the target state (pure; used by every store).

    Returns ``(allowed sources, target, fields to write, the table row)``; a field given as
    ``None`` is cleared. Raises :class:`StoreError` for a field the event does not set.
    """
    rule = TRANSITIONS[event]
    unknown = set(fields) - rule.fields
    if unknown:
        raise StoreError(f"{event.value} does not set {sorted(unknown)}")
    values: dict[str, Any] = dict.fromkeys(rule.clears)
    values.update(fields)
    if event in _DEFAULT_ERRORS and not values.get("error"):
        values["error"] = _DEFAULT_ERRORS[event]
    target = rule.target
    if target is None:  # FINISHED
        ok = bool(fields.get("video_url")) and fields.get("error") is None
        target = JobState.COMPLETED if ok else JobState.FAILED
    return rule.sources, target, values, rule


@dataclass(frozen=True)
class StoredJob:
    """One job as the store knows it."""

    key: str
    """The input key (:func:`input_key`)."""
    request: dict[str, Any] | None
    """The request body (``None`` for a job added by id with :meth:`JobStore.add_tracked`)."""
    state: JobState
    seq: int
    """Order of arrival in the batch (1-based)."""
    generation_id: str | None = None
    status: str | None = None
    video_url: str | None = None
    credits: float | None = None
    error: str | None = None
    file: str | None = None
    sha256: str | None = None
    size: int | None = None
    owner: str | None = None
    """The worker that took the intent (the one that sent, or may have sent, the create)."""
    previous_ids: list[str] = field(default_factory=list)
    """Ids of earlier attempts (before a :data:`Event.RESET`)."""
    attempts: int = 0
    """How many intents were taken (creates sent or possibly sent)."""
    intent_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    downloaded_at: float | None = None
    updated_at: float | None = None


WorkKind = Literal["submit", "track"]


@dataclass(frozen=True)
class WorkItem:
    """A lease on one job handed to one worker (:meth:`JobStore.take_work`).

    ``kind`` is ``"submit"`` for an input (look at its state: it may already be submitted) and
    ``"track"`` for a job added by generation id.
    """

    id: str
    """The lease's id in the store (a stream entry id, a row id)."""
    key: str
    kind: WorkKind


@runtime_checkable
class JobStore(Protocol):
    """Where the jobs of a batch live: durable, shared by every worker of the batch.

    Every method is a coroutine; every write is atomic. Implementations:
    :class:`~veo_async.stores.SQLiteStore` (embedded, one machine) and
    :class:`~veo_async.stores.RedisStore` (many processes, many machines).
    """

    @property
    def batch_id(self) -> str:
        """The namespace of this batch in the store."""
        ...

    async def add_inputs(self, inputs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Register ``(key, request body)`` pairs as pending jobs and queue them as work.

        Idempotent: a key already known is left alone (whatever its state), so any number of
        workers may add the same inputs. Returns the keys that were new.
        """
        ...

    async def add_tracked(self, generation_ids: Iterable[str]) -> list[str]:
        """Register generations already submitted elsewhere, to be tracked (``"track"`` work).

        Their keys are ``"id:" + generation_id``; returns the keys that were new.
        """
        ...

    async def claim_intent(self, key: str, worker: str) -> bool:
        """Take the step ``pending``/``refused`` -> ``submitting`` for ``worker``, atomically.

        Returns ``True`` for exactly one caller; that caller, and only it, may send the create.
        Durable before it returns. Raises :class:`StoreError` for an unknown key.
        """
        ...

    async def transition(self, key: str, event: Event, **fields: Any) -> bool:
        """Apply ``event`` to job ``key`` with ``fields`` (see :data:`TRANSITIONS`).

        Returns ``False`` (and changes nothing) when the job is not in a state the event may
        leave. Raises :class:`StoreError` for an unknown key or a field the event does not set.
        """
        ...

    async def get(self, key: str) -> StoredJob | None:
        """One job, or ``None``."""
        ...

    async def jobs(self) -> list[StoredJob]:
        """Every job of the batch, in order of arrival."""
        ...

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zeros included)."""
        ...

    async def take_work(self, worker: str, *, count: int = 1, wait: float = 0.0) -> list[WorkItem]:
        """Lease up to ``count`` jobs nobody has taken yet; wait up to ``wait`` s for some."""
        ...

    async def heartbeat(self, worker: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Renew ``worker``'s leases; returns the items it lost (another worker took them)."""
        ...

    async def reclaim(self, worker: str, *, min_idle: float, count: int = 100) -> list[WorkItem]:
        """Take over leases not renewed for ``min_idle`` s (their worker died), for ``worker``."""
        ...

    async def ack(self, worker: str, items: Sequence[WorkItem]) -> None:
        """End leases: the jobs are finished (or reported) and need no worker any more."""
        ...

    async def get_meta(self, name: str) -> str | None:
        """A batch-level value (fingerprint, source, target), or ``None``."""
        ...

    async def set_meta(self, name: str, value: str) -> None:
        """Set a batch-level value."""
        ...

    async def aclose(self) -> None:
        """Release the connection; the data stays."""
        ...


# --------------------------------------------------------------------------- keys


def _canonical(body: Mapping[str, Any]) -> bytes:
    # Same canonical form as the CLI journal's request_sha256 (json.dumps, sorted keys), so a
    # journal's rows can be re-keyed without recomputing anything.
    return json.dumps(dict(body), sort_keys=True).encode()


def input_key(body: Mapping[str, Any], occurrence: int = 1) -> str:
    """The key of a request: the SHA-256 of its canonical JSON body.

    Identical requests get the same key; when an input list holds the same request several
    times on purpose, the ``n``-th copy (``occurrence=n``, 1-based) is ``"<sha256>.<n>"``.
    Use :func:`input_keys` to number a whole list.
    """
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return digest if occurrence <= 1 else f"{digest}.{occurrence}"


def input_keys(bodies: Iterable[Mapping[str, Any]]) -> list[str]:
    """Keys for a list of request bodies, numbering repeated requests (see :func:`input_key`).

    Independent of order among different requests: moving lines around keeps every key.
    """
    seen: dict[str, int] = {}
    keys = []
    for body in bodies:
        digest = hashlib.sha256(_canonical(body)).hexdigest()
        seen[digest] = seen.get(digest, 0) + 1
        n = seen[digest]
        keys.append(digest if n == 1 else f"{digest}.{n}")
    return keys


def batch_fingerprint(keys: Iterable[str]) -> str:
    """A batch id derived from its input keys (order-independent): ``"b-"`` + 24 hex digits.

    Workers started with the same inputs compute the same id; different inputs, another id.
    """
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return "b-" + digest[:24]


_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is 1-128 characters of letters, digits, ``.``, ``_``, ``-``."""
    if not _BATCH_RE.match(batch_id):
        raise StoreError(
            f"invalid batch id {batch_id!r}: use 1-128 letters, digits, '.', '_' or '-'"
        )
    return batch_id


def redact_url(url: str) -> str:
    """``url`` without its password or query string (safe for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://<unparsable>"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))
