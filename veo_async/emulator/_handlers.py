"""The request handlers: create, poll and download, each a short sequence of named steps.

A handler takes the parts of a request it needs and returns a :class:`~._replies.Reply`.
Every one first counts the request in the ledger and takes the emulator's lock; create and
poll then authenticate and rate-limit the key (:meth:`Handlers._gate`). The order of the
steps, and of the counters that number a request for its fault draw, is what makes a seeded
run repeat, so keep it when changing a handler.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ._config import FaultKind
from ._faults import PRE_FAULTS, FaultTable, decide, hash_floats
from ._jobs import Job, KeyState, admit, advance, credits_for, default_clip_seconds, new_job
from ._limits import bearer_key, bucket_capacity, take_token
from ._replies import CDN_PREFIX, Replies, Reply, dumps, retry_after_text
from ._validation import VENDOR_PATH, FieldError, SchemaRegistry

UNKNOWN_STATUSES: tuple[str, ...] = ("waiting", "active", "processing", "pending", "in_progress")
"""Status strings an ``unknown_status`` fault answers with (none is documented)."""

_INVALID_JSON = object()
"""Stands for a create body that is not JSON."""


def _parse_create_body(raw_body: bytes) -> tuple[object, str]:
    """The create body parsed (or ``_INVALID_JSON``) and its identity: a hash of its content."""
    try:
        body: object = json.loads(raw_body) if raw_body else None
        identity = hashlib.blake2b(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
            digest_size=12,
        ).hexdigest()
    except (ValueError, UnicodeDecodeError):
        return _INVALID_JSON, hashlib.blake2b(raw_body, digest_size=12).hexdigest()
    return body, identity


def _clip_seconds(body: Mapping[str, Any], default_duration: int | None, model: str) -> int:
    """The clip length a create asks for: its ``duration``, else the model's default."""
    duration = body.get("duration")
    clip = int(duration) if isinstance(duration, (int, float)) else None
    if clip is None:
        clip = default_duration or default_clip_seconds(model)
    return clip


class Handlers(Replies):
    """The emulator's request handlers (a mixin: :class:`~._state.Emulator` holds the state)."""

    _lock: threading.Lock
    _clock: Callable[[], float]
    _registry: SchemaRegistry
    _faults: FaultTable
    _jobs: dict[str, Job]
    _keys: dict[str, KeyState]
    _create_attempts: Counter[str]
    _created_per_body: Counter[str]
    _anonymous_polls: int
    _anonymous_downloads: int
    _seq: int

    # ------------------------------------------------------------------ request handlers

    def handle_create(
        self, path: str, authorization: str | None, raw_body: bytes, base_url: str
    ) -> Reply:
        """Handle ``POST`` on a create path.

        In order: count it, authenticate and rate-limit, parse the body, draw the create
        fault, validate, check the credits, make the job, answer.
        """
        with self._lock:
            now = self._clock()
            self._ledger.create_requests += 1
            rid = str(uuid.uuid4())
            state, refusal = self._gate(path, authorization, now, rid)
            if refusal is not None:
                return refusal
            assert state is not None
            body, identity = _parse_create_body(raw_body)
            fault = self._create_fault(identity)
            if body is _INVALID_JSON:
                return self._invalid_json(fault, path, rid, now)
            creates_job = (
                fault == "gateway_timeout" and self._config.faults.gateway_timeout_creates_job
            )
            if fault is not None and fault in PRE_FAULTS and not creates_job:
                return self._pre_fault(fault, path, rid, now)
            spec, errors = self._registry.validate(path, body)
            if errors or spec is None or not isinstance(body, dict):
                return self._validation_error(path, rid, now, errors)
            clip = _clip_seconds(body, spec.default_duration, spec.model)
            cost = credits_for(spec.model, clip)
            refusal = self._credit_refusal(state, cost, path, rid, now)
            if refusal is not None:
                return refusal
            job = self._create_job(state, path, spec.model, body, identity, clip, cost, now)
            if fault is not None and fault in PRE_FAULTS:
                # gateway_timeout that still made the job.
                return self._pre_fault(fault, path, rid, now)
            doc = self._generation_doc(job, job.status_at(now), base_url)
            return self._finish_api_reply(self._create_status(path), doc, rid, fault)

    def handle_poll(
        self, path: str, authorization: str | None, generation_id: str | None, base_url: str
    ) -> Reply:
        """Handle ``GET`` on a create path (``?generation_id=``)."""
        with self._lock:
            now = self._clock()
            ledger = self._ledger
            ledger.poll_requests += 1
            rid = str(uuid.uuid4())
            state, refusal = self._gate(path, authorization, now, rid)
            if refusal is not None:
                return refusal
            assert state is not None
            if not generation_id:
                error = FieldError(
                    code="invalid_type",
                    path=["generation_id"],
                    expected="string",
                    received="undefined",
                    message="Required",
                )
                return self._validation_error(path, rid, now, [error], "Query validation error")
            job = self._jobs.get(generation_id)
            if job is not None and job.owner is not state:
                job = None
            if job is not None:
                number = job.polls
                job.polls += 1
            else:
                number = self._anonymous_polls
                self._anonymous_polls += 1
            fault = self._decide(self._faults.poll, "poll", generation_id, number)
            if fault is not None and fault in PRE_FAULTS:
                return self._pre_fault(fault, path, rid, now)
            if job is None:
                return self._error(404, f"Generation {generation_id} not found", path, rid, now)
            advance(state, now, self._config.max_concurrent)
            status = job.status_at(now)
            doc = self._generation_doc(job, status, base_url)
            if fault == "unknown_status":
                pick = hash_floats(f"{self._config.seed}|status|{job.id}|{number}", 1)[0]
                doc["status"] = UNKNOWN_STATUSES[int(pick * len(UNKNOWN_STATUSES))]
            elif (
                status == "completed"
                and fault != "malformed_json"
                and job.first_completed_poll_at is None
            ):
                job.first_completed_poll_at = now
            return self._finish_api_reply(200, doc, rid, fault)

    def handle_download(
        self,
        path: str,
        has_authorization: bool,
        method: str = "GET",
        range_header: str | None = None,
    ) -> Reply:
        """Handle a request to the CDN path ``/cdn/generations/<id>.mp4``."""
        with self._lock:
            now = self._clock()
            self._ledger.download_requests += 1
            rid = str(uuid.uuid4())
            if has_authorization:
                return self._key_leak(path, rid, now)
            name = path[len(CDN_PREFIX) :] if path.startswith(CDN_PREFIX) else ""
            generation_id = name[:-4] if name.endswith(".mp4") else ""
            job, number = self._count_download(generation_id)
            fault = self._decide(self._faults.download, "download", generation_id, number)
            if fault is not None and fault in PRE_FAULTS:
                return self._pre_fault(fault, path, rid, now)
            if job is not None and job.forgotten_at is None:
                advance(job.owner, now, self._config.max_concurrent)
            if job is None or job.outcome != "completed" or job.ledger_status(now) != "completed":
                return self._error(404, "File not found", path, rid, now)
            reply = self._video_reply(job, rid, range_header, fault)
            if method != "HEAD" and reply.status != 416:
                self._download_fault(reply, fault, generation_id, number)
            return reply

    def handle_not_found(self, path: str) -> Reply:
        """Answer an unknown path with the documented 404 error body."""
        with self._lock:
            return self._error(404, f"Cannot find {path}", path, str(uuid.uuid4()), self._clock())

    def handle_method_not_allowed(self, path: str, method: str) -> Reply:
        """Answer a known path with an unsupported method."""
        with self._lock:
            message = f"Method {method} is not allowed on {path}"
            return self._error(405, message, path, str(uuid.uuid4()), self._clock())

    def control_reply(self, status: int, doc: object) -> Reply:
        """A JSON reply for the ``/_emulator`` control endpoints (not counted in the ledger)."""
        headers = [("content-type", "application/json"), ("x-request-id", str(uuid.uuid4()))]
        return Reply(status, dumps(doc), headers)

    # ------------------------------------------------------------------ steps of a create

    def _create_fault(self, identity: str) -> FaultKind | None:
        """Count one more create of this body and draw its fault."""
        attempt = self._create_attempts[identity]
        self._create_attempts[identity] += 1
        return self._decide(self._faults.create, "create", identity, attempt)

    def _invalid_json(self, fault: FaultKind | None, path: str, rid: str, now: float) -> Reply:
        """A body that is not JSON: the fault if one answers first, else a 400."""
        if fault is not None and fault in PRE_FAULTS:
            return self._pre_fault(fault, path, rid, now)
        error = FieldError(
            code="invalid_json",
            path=[],
            expected="object",
            received="invalid JSON",
            message="Unexpected token in JSON body",
        )
        return self._validation_error(path, rid, now, [error])

    def _credit_refusal(
        self, state: KeyState, cost: int, path: str, rid: str, now: float
    ) -> Reply | None:
        """A 403 when this generation would take the key over its credits, else ``None``."""
        limit = self._config.credits
        if limit is None or state.charged + cost <= limit:
            return None
        left = max(0, limit - state.charged)
        message = (
            f"Insufficient credits: this generation costs {cost} credits and the "
            f"balance is {left}. Top up your balance to continue."
        )
        return self._error(403, message, path, rid, now)

    def _create_status(self, path: str) -> int:
        """The status a successful create answers with on ``path``."""
        if path == VENDOR_PATH:
            return self._config.vendor_create_status
        return self._config.universal_create_status

    # ------------------------------------------------------------------ steps of a download

    def _count_download(self, generation_id: str) -> tuple[Job | None, int]:
        """The job a CDN path names (if any) and this request's number for it."""
        job = self._ledger.generations.get(generation_id)
        if job is not None:
            number = job.downloads
            job.downloads += 1
        else:
            number = self._anonymous_downloads
            self._anonymous_downloads += 1
        return job, number

    def _download_fault(
        self, reply: Reply, fault: FaultKind | None, generation_id: str, number: int
    ) -> None:
        """Make a video reply slow or cut short, as the drawn fault says."""
        if fault == "slow_response":
            reply.delay = self._config.faults.slow_response_delay
        elif fault == "truncated_download":
            cut = hash_floats(f"{self._config.seed}|cut|{generation_id}|{number}", 1)[0]
            reply.action = "truncate"
            reply.truncate_at = int(len(reply.body) * (0.1 + 0.8 * cut))

    # ------------------------------------------------------------------ internals

    def _key_state(self, key: str, now: float) -> KeyState:
        """The state of ``key``, made on its first request."""
        state = self._keys.get(key)
        if state is None:
            label = hashlib.sha256(key.encode()).hexdigest()[:10]
            state = KeyState(label, bucket_capacity(self._config), now)
            self._keys[key] = state
        return state

    def _gate(
        self, path: str, authorization: str | None, now: float, rid: str
    ) -> tuple[KeyState | None, Reply | None]:
        """Authenticate and rate-limit; return the key state or a refusal."""
        key = bearer_key(authorization)
        if key is None:
            message = "Missing API key: send 'Authorization: Bearer <your API key>'"
            return None, self._error(401, message, path, rid, now)
        expected = self._config.api_key
        if expected is not None and key != expected:
            return None, self._error(401, "Invalid API key", path, rid, now)
        state = self._key_state(key, now)
        wait = take_token(state, now, self._config)
        if wait is not None:
            self._ledger.rate_limited += 1
            message = "Too many requests: the rate limit of this API key was exceeded"
            headers = [("retry-after", retry_after_text(wait, self._config.time_scale))]
            return None, self._error(429, message, path, rid, now, headers=headers)
        return state, None

    def _decide(
        self, table: tuple[tuple[float, FaultKind], ...], kind: str, identity: str, number: int
    ) -> FaultKind | None:
        """The fault for request ``number`` of ``identity`` under the current seed."""
        return decide(table, self._config.seed, kind, identity, number)

    def _create_job(
        self,
        state: KeyState,
        path: str,
        model: str,
        body: dict[str, Any],
        identity: str,
        clip: int,
        cost: int,
        now: float,
    ) -> Job:
        """Make, charge and admit a job (it starts now or queues behind the key's others)."""
        ledger = self._ledger
        generation_id = self._new_generation_id(identity)
        self._seq += 1
        job = new_job(
            self._config,
            ledger,
            id=generation_id,
            seq=self._seq,
            owner=state,
            path=path,
            model=model,
            body=body,
            clip=clip,
            cost=cost,
            now=now,
        )
        self._jobs[generation_id] = job
        ledger.generations[generation_id] = job
        ledger.generations_created += 1
        ledger.credits_charged += cost
        state.charged += cost
        admit(state, job, now, self._config.max_concurrent)
        return job

    def _new_generation_id(self, identity: str) -> str:
        """The next id for this body: a hash of the seed, the body and how many it made."""
        while True:
            index = self._created_per_body[identity]
            self._created_per_body[identity] += 1
            raw = hashlib.blake2b(
                f"{self._config.seed}|id|{identity}|{index}".encode(), digest_size=16
            ).digest()
            generation_id = str(uuid.UUID(bytes=raw, version=4))
            if generation_id not in self._ledger.generations:
                return generation_id
