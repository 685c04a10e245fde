"""The emulator's state: jobs, the discrete-event simulation, limits, faults and the ledger.

This module knows nothing about HTTP servers. Each request handler takes the parts of a
request it needs and returns a :class:`Reply` (status, headers, body and what to do with
the connection); ``_app.py`` turns a reply into ASGI messages.

Time is wall-clock epoch seconds from an injectable clock (``time.time`` by default), so a
client in another process can compare its own ``time.time()`` with the ledger. Simulated
durations are multiplied by ``EmulatorConfig.time_scale``. Nothing runs in the
background: each request first advances its key's simulation to "now" by popping finished
jobs off a heap and starting queued ones at the exact time a slot freed.

Random decisions (ids, generation times, outcomes, faults) are hashes of the seed and the
request's identity (the body for creates, the generation id and poll number for polls), so
a run repeats under the same seed even when requests interleave differently.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from ._config import (
    CREATE_FAULTS,
    DOWNLOAD_FAULTS,
    POLL_FAULTS,
    EmulatorConfig,
    FaultConfig,
    FaultKind,
)
from ._validation import UNIVERSAL_PATH, VENDOR_PATH, FieldError, SchemaRegistry

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "CDN_PREFIX",
    "UNKNOWN_STATUSES",
    "Clock",
    "Emulator",
    "Job",
    "Ledger",
    "Reply",
    "credits_for",
    "duplicate_prompts",
    "generation_seconds",
    "sample_video",
]

Clock = Callable[[], float]
"""A function returning the current time in epoch seconds."""

CDN_PREFIX = "/cdn/generations/"
"""Path prefix of the emulated CDN; a video is at ``/cdn/generations/<id>.mp4``."""

UNKNOWN_STATUSES: tuple[str, ...] = ("waiting", "active", "processing", "pending", "in_progress")
"""Status strings an ``unknown_status`` fault answers with (none is documented)."""

_JOB_ERRORS: tuple[tuple[str, str], ...] = (
    ("GenerationError", "The model failed to generate the video. Please try again."),
    ("ContentPolicyViolation", "The request was blocked by the provider's safety filters."),
    ("UpstreamError", "The upstream model provider returned an internal error."),
)

_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Action = Literal["respond", "reset", "truncate"]
Outcome = Literal["completed", "error", "no_url"]


@lru_cache(maxsize=1)
def sample_video() -> bytes:
    """The small, valid MP4 (H.264, 320x180, 2 s) every completed generation serves."""
    return (resources.files(__package__ or "veo_async.emulator") / "sample.mp4").read_bytes()


def _profile(model: str) -> tuple[float, int, int]:
    """(simulated seconds to make a 5 s clip, credits per clip second, default clip length)."""
    name = model.lower()
    if name.startswith("veo2"):
        return 45.0, 24_000, 5
    if "gemini" in name:
        return 55.0, 30_000, 8
    if "lite" in name:
        return 40.0, 21_000, 8
    if "fast" in name:
        return 42.0, 42_000, 8
    return 70.0, 84_000, 8


def generation_seconds(model: str, clip_seconds: int, z: float = 0.0) -> float:
    """Simulated generation time of one clip; ``z`` is a standard-normal deviate.

    A 5 s Veo2 clip takes about 45 s (42 to 49 s within one standard deviation); longer
    clips take longer (power 0.75 of the length) and Veo 3 models take longer still.
    """
    base, _, _ = _profile(model)
    z = max(-3.0, min(3.0, z))
    length_factor: float = math.pow(max(clip_seconds, 1) / 5.0, 0.75)
    return base * length_factor * math.exp(0.075 * z)


def credits_for(model: str, clip_seconds: int) -> int:
    """Credits charged for one generation (veo2, 5 s: 120000, as in the provider's example)."""
    _, per_second, _ = _profile(model)
    return per_second * max(clip_seconds, 1)


def default_clip_seconds(model: str) -> int:
    """Clip length a model uses when the body has no ``duration``."""
    return _profile(model)[2]


@dataclass(slots=True)
class Reply:
    """What the HTTP layer should send for one request."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]
    action: Action = "respond"
    """``respond`` normally; ``reset`` the connection before any byte; ``truncate`` the body."""
    delay: float = 0.0
    """Real seconds to wait before answering (the ``slow_response`` fault)."""
    truncate_at: int = 0
    """With ``truncate``: how many body bytes to send before closing the connection."""
    fault: FaultKind | None = None
    """The injected fault, if any (informational)."""

    def header(self, name: str) -> str | None:
        """Value of a response header (case-insensitive), or ``None``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key == lowered:
                return value
        return None

    def json(self) -> Any:
        """The body parsed as JSON (raises on a malformed body)."""
        return json.loads(self.body)


class _KeyState:
    """Per-key (per-account) state: running heap, FIFO queue, token bucket, credits."""

    __slots__ = ("charged", "label", "queue", "refilled_at", "running", "tokens")

    def __init__(self, label: str, tokens: float, now: float) -> None:
        self.label = label
        self.running: list[tuple[float, int, Job]] = []
        self.queue: deque[Job] = deque()
        self.tokens = tokens
        self.refilled_at = now
        self.charged = 0


class Job:
    """One generation: a small slotted record that is both simulation state and ledger entry."""

    __slots__ = (
        "body",
        "created_at",
        "credits",
        "downloads",
        "error_index",
        "finished_at",
        "first_completed_poll_at",
        "forgotten_at",
        "gen_time",
        "id",
        "model",
        "outcome",
        "owner",
        "path",
        "polls",
        "prompt",
        "ready_at",
        "seq",
        "started_at",
    )

    def __init__(
        self,
        *,
        id: str,
        seq: int,
        owner: _KeyState,
        path: str,
        model: str,
        prompt: str,
        body: dict[str, Any],
        created_at: float,
        ready_at: float,
        gen_time: float,
        outcome: Outcome,
        error_index: int,
        credits: int,
    ) -> None:
        self.id = id
        self.seq = seq
        self.owner = owner
        self.path = path
        self.model = model
        self.prompt = prompt
        self.body = body
        self.created_at = created_at
        self.ready_at = ready_at
        self.gen_time = gen_time
        self.outcome: Outcome = outcome
        self.error_index = error_index
        self.credits = credits
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.first_completed_poll_at: float | None = None
        self.forgotten_at: float | None = None
        self.polls = 0
        self.downloads = 0

    def status_at(self, now: float) -> str:
        """The documented status at ``now`` (the key's simulation must be advanced first)."""
        started = self.started_at
        if started is None or now < started:
            return "queued"
        finished = self.finished_at
        assert finished is not None
        if now < finished:
            return "generating"
        return "error" if self.outcome == "error" else "completed"

    def ledger_status(self, now: float) -> str:
        """Like :meth:`status_at`, but ``forgotten`` if a restart lost it before it ended."""
        forgotten = self.forgotten_at
        if forgotten is not None and (self.finished_at is None or self.finished_at > forgotten):
            return "forgotten"
        return self.status_at(now)

    def record(self, now: float) -> dict[str, Any]:
        """This generation's ledger entry as a JSON-able dict."""
        status = self.ledger_status(now)
        done = self.finished_at if status in ("completed", "error") else None
        first = self.first_completed_poll_at
        return {
            "id": self.id,
            "prompt": self.prompt,
            "model": self.model,
            "path": self.path,
            "account": self.owner.label,
            "body": self.body,
            "created_at": self.created_at,
            "started_at": self.started_at
            if self.started_at is not None and self.started_at <= now
            else None,
            "completed_at": done,
            "status": status,
            "outcome": self.outcome,
            "credits": self.credits,
            "polls": self.polls,
            "downloads": self.downloads,
            "first_completed_poll_at": first,
            "detection_delay": first - done if first is not None and done is not None else None,
            "forgotten_at": self.forgotten_at,
        }


def duplicate_prompts(records: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Prompts with more than one generation: ``{prompt: [generation ids]}``.

    Works on ``stats()["generations"]`` from the HTTP endpoint as well as in process.
    """
    by_prompt: dict[str, list[str]] = {}
    for record in records:
        by_prompt.setdefault(str(record["prompt"]), []).append(str(record["id"]))
    return {prompt: ids for prompt, ids in by_prompt.items() if len(ids) > 1}


class Ledger:
    """What the emulator saw and did; the ground truth for "nothing lost, nothing paid twice".

    Counters are plain attributes. ``generations`` maps id to :class:`Job` for every
    generation ever created (restarts keep them; :meth:`Emulator.reset` clears them).
    """

    def __init__(self) -> None:
        self.create_requests = 0
        """Create requests received (every one, whatever its answer)."""
        self.generations_created = 0
        """Generations made (and charged)."""
        self.poll_requests = 0
        """Poll requests received."""
        self.download_requests = 0
        """Requests to the CDN path."""
        self.rate_limited = 0
        """429 responses sent (the real limiter and injected ones)."""
        self.faults_injected: Counter[str] = Counter()
        """Injected faults by kind (generation outcomes count when the job is created)."""
        self.credits_charged = 0
        """Credits charged over all keys."""
        self.cdn_requests_with_authorization = 0
        """CDN requests that carried an ``Authorization`` header (a key leak)."""
        self.responses_by_status: Counter[int] = Counter()
        """Responses by HTTP status (resets and truncations are counted as faults only)."""
        self.restarts = 0
        """Times :meth:`Emulator.restart` forgot the live jobs."""
        self.generations: dict[str, Job] = {}
        """Every generation, by id."""

    def duplicate_prompts(self) -> dict[str, list[str]]:
        """Prompts with more than one generation: ``{prompt: [ids]}``."""
        by_prompt: dict[str, list[str]] = {}
        for job in self.generations.values():
            by_prompt.setdefault(job.prompt, []).append(job.id)
        return {prompt: ids for prompt, ids in by_prompt.items() if len(ids) > 1}

    def counters(self) -> dict[str, Any]:
        """The counters as a JSON-able dict."""
        return {
            "create_requests": self.create_requests,
            "generations_created": self.generations_created,
            "poll_requests": self.poll_requests,
            "download_requests": self.download_requests,
            "rate_limited": self.rate_limited,
            "faults_injected": dict(sorted(self.faults_injected.items())),
            "credits_charged": self.credits_charged,
            "cdn_requests_with_authorization": self.cdn_requests_with_authorization,
            "responses_by_status": {
                str(code): n for code, n in sorted(self.responses_by_status.items())
            },
            "restarts": self.restarts,
        }


@dataclass(frozen=True)
class _FaultTable:
    create: tuple[tuple[float, FaultKind], ...] = field(default=())
    poll: tuple[tuple[float, FaultKind], ...] = field(default=())
    download: tuple[tuple[float, FaultKind], ...] = field(default=())

    @classmethod
    def build(cls, faults: FaultConfig) -> _FaultTable:
        def table(kinds: tuple[FaultKind, ...]) -> tuple[tuple[float, FaultKind], ...]:
            out: list[tuple[float, FaultKind]] = []
            total = 0.0
            for kind in kinds:
                rate = faults.rate(kind)
                if rate > 0:
                    total += rate
                    out.append((total, kind))
            return tuple(out)

        return cls(table(CREATE_FAULTS), table(POLL_FAULTS), table(DOWNLOAD_FAULTS))


def _hash_floats(text: str, count: int) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=8 * count).digest()
    return [
        int.from_bytes(digest[i : i + 8], "big") / 18446744073709551616.0
        for i in range(0, 8 * count, 8)
    ]


def _normal(u1: float, u2: float) -> float:
    return math.sqrt(-2.0 * math.log(max(u1, 1e-12))) * math.cos(2.0 * math.pi * u2)


def _iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class Emulator:
    """The emulated API: request handlers, simulation, limits, faults and ledger.

    Thread-safe: every public method takes an internal lock, so tests can read the ledger
    or reconfigure from one thread while a server thread handles requests.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Clock | None = None,
        registry: SchemaRegistry | None = None,
    ) -> None:
        """Create an emulator; ``clock`` defaults to :func:`time.time`."""
        self._lock = threading.Lock()
        self._clock: Clock = clock or time.time
        self._registry = registry or SchemaRegistry.from_directory()
        self._config = config or EmulatorConfig()
        self._faults = _FaultTable.build(self._config.faults)
        self._app: Starlette | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._ledger = Ledger()
        self._jobs: dict[str, Job] = {}
        self._keys: dict[str, _KeyState] = {}
        self._create_attempts: Counter[str] = Counter()
        self._created_per_body: Counter[str] = Counter()
        self._anonymous_polls = 0
        self._anonymous_downloads = 0
        self._seq = 0

    # ------------------------------------------------------------------ public controls

    @property
    def config(self) -> EmulatorConfig:
        """The current configuration (replace it with :meth:`configure`)."""
        return self._config

    @property
    def ledger(self) -> Ledger:
        """The live ledger (read it; call :meth:`stats` for a consistent snapshot)."""
        return self._ledger

    @property
    def registry(self) -> SchemaRegistry:
        """The provider schemas requests are validated against."""
        return self._registry

    @property
    def app(self) -> Starlette:
        """An ASGI app serving this emulator (made on first use)."""
        if self._app is None:
            from ._app import create_app

            self._app = create_app(emulator=self)
        return self._app

    def now(self) -> float:
        """The emulator clock's current time (epoch seconds)."""
        return self._clock()

    def configure(
        self, patch: Mapping[str, Any] | None = None, /, **changes: Any
    ) -> EmulatorConfig:
        """Apply a config patch (``faults`` merges key by key) and return the new config.

        Takes effect immediately: e.g. ``configure(api_key="other")`` makes the old key get
        401 mid-batch, ``configure(credits=0)`` makes the next create get 403, raising
        ``max_concurrent`` starts queued jobs now.
        """
        merged = {**(patch or {}), **changes}
        with self._lock:
            new = self._config.patched(merged)
            now = self._clock()
            for state in self._keys.values():
                self._advance(state, now)
            self._config = new
            self._faults = _FaultTable.build(new.faults)
            burst = self._burst()
            for state in self._keys.values():
                state.tokens = min(state.tokens, burst)
                self._fill(state, now)
            return new

    def set_faults(self, faults: FaultConfig | None = None, /, **rates: Any) -> FaultConfig:
        """Replace the fault rates (``set_faults(FaultConfig.mixed(0.2))``) or patch some
        (``set_faults(server_error=0.5)``); returns the new :class:`FaultConfig`."""
        if faults is not None:
            data: dict[str, Any] = {**faults.model_dump(), **rates}
            return self.configure(faults=data).faults
        return self.configure(faults=rates).faults

    def restart(self) -> None:
        """Forget every live job (their ids now get 404), as a server restart would.

        The ledger keeps the generations (marked ``forgotten`` if they had not ended) and
        the credits charged; rate-limit buckets refill.
        """
        with self._lock:
            now = self._clock()
            for state in self._keys.values():
                self._advance(state, now)
            for job in self._jobs.values():
                job.forgotten_at = now
            self._jobs.clear()
            for state in self._keys.values():
                state.running.clear()
                state.queue.clear()
                state.tokens = self._burst()
                state.refilled_at = now
            self._ledger.restarts += 1

    def reset(self) -> None:
        """Forget everything (jobs, ledger, counters, credits used); keep the config."""
        with self._lock:
            self._init_state()

    def stats(self, *, include_generations: bool = True) -> dict[str, Any]:
        """A JSON-able snapshot of the ledger, as ``GET /_emulator/stats`` returns it."""
        with self._lock:
            now = self._clock()
            for state in self._keys.values():
                self._advance(state, now)
            ledger = self._ledger
            out: dict[str, Any] = {"now": now, **ledger.counters()}
            by_status: Counter[str] = Counter(
                job.ledger_status(now) for job in ledger.generations.values()
            )
            out["generations_by_status"] = dict(sorted(by_status.items()))
            out["duplicate_prompts"] = ledger.duplicate_prompts()
            if include_generations:
                out["generations"] = [job.record(now) for job in ledger.generations.values()]
            return out

    def duplicate_prompts(self) -> dict[str, list[str]]:
        """Prompts with more than one generation: ``{prompt: [ids]}``."""
        with self._lock:
            return self._ledger.duplicate_prompts()

    def generation(self, generation_id: str) -> dict[str, Any] | None:
        """One generation's ledger entry, or ``None``."""
        with self._lock:
            job = self._ledger.generations.get(generation_id)
            if job is None:
                return None
            now = self._clock()
            if job.forgotten_at is None:
                self._advance(job.owner, now)
            return job.record(now)

    # ------------------------------------------------------------------ request handlers

    def handle_create(
        self, path: str, authorization: str | None, raw_body: bytes, base_url: str
    ) -> Reply:
        """Handle ``POST`` on a create path."""
        with self._lock:
            now = self._clock()
            ledger = self._ledger
            ledger.create_requests += 1
            rid = str(uuid.uuid4())
            state, refusal = self._gate(path, authorization, now, rid)
            if refusal is not None:
                return refusal
            assert state is not None
            try:
                body: object = json.loads(raw_body) if raw_body else None
                identity = hashlib.blake2b(
                    json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                    digest_size=12,
                ).hexdigest()
            except (ValueError, UnicodeDecodeError):
                body = None
                identity = hashlib.blake2b(raw_body, digest_size=12).hexdigest()
                attempt = self._create_attempts[identity]
                self._create_attempts[identity] += 1
                fault = self._decide(self._faults.create, "create", identity, attempt)
                if fault is not None and fault in _PRE_FAULTS:
                    return self._pre_fault(fault, path, rid, now)
                error = FieldError(
                    code="invalid_json",
                    path=[],
                    expected="object",
                    received="invalid JSON",
                    message="Unexpected token in JSON body",
                )
                return self._validation_error(path, rid, now, [error])
            attempt = self._create_attempts[identity]
            self._create_attempts[identity] += 1
            fault = self._decide(self._faults.create, "create", identity, attempt)
            creates_job = (
                fault == "gateway_timeout" and self._config.faults.gateway_timeout_creates_job
            )
            if fault is not None and fault in _PRE_FAULTS and not creates_job:
                return self._pre_fault(fault, path, rid, now)
            spec, errors = self._registry.validate(path, body)
            if errors or spec is None or not isinstance(body, dict):
                return self._validation_error(path, rid, now, errors)
            duration = body.get("duration")
            clip = int(duration) if isinstance(duration, (int, float)) else None
            if clip is None:
                clip = spec.default_duration or default_clip_seconds(spec.model)
            cost = credits_for(spec.model, clip)
            limit = self._config.credits
            if limit is not None and state.charged + cost > limit:
                left = max(0, limit - state.charged)
                message = (
                    f"Insufficient credits: this generation costs {cost} credits and the "
                    f"balance is {left}. Top up your balance to continue."
                )
                return self._error(403, message, path, rid, now)
            job = self._create_job(state, path, spec.model, body, identity, clip, cost, now)
            if fault is not None and fault in _PRE_FAULTS:
                # gateway_timeout that still made the job.
                return self._pre_fault(fault, path, rid, now)
            status = (
                self._config.vendor_create_status
                if path == VENDOR_PATH
                else self._config.universal_create_status
            )
            doc = self._generation_doc(job, job.status_at(now), base_url)
            return self._finish_api_reply(status, doc, rid, fault)

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
            if fault is not None and fault in _PRE_FAULTS:
                return self._pre_fault(fault, path, rid, now)
            if job is None:
                return self._error(404, f"Generation {generation_id} not found", path, rid, now)
            self._advance(state, now)
            status = job.status_at(now)
            doc = self._generation_doc(job, status, base_url)
            if fault == "unknown_status":
                pick = _hash_floats(f"{self._config.seed}|status|{job.id}|{number}", 1)[0]
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
            ledger = self._ledger
            ledger.download_requests += 1
            rid = str(uuid.uuid4())
            if has_authorization:
                ledger.cdn_requests_with_authorization += 1
                return self._error(
                    403,
                    "The CDN does not take API keys: an Authorization header was sent to "
                    "the video host (the key leaked)",
                    path,
                    rid,
                    now,
                )
            name = path[len(CDN_PREFIX) :] if path.startswith(CDN_PREFIX) else ""
            generation_id = name[:-4] if name.endswith(".mp4") else ""
            job = self._ledger.generations.get(generation_id)
            if job is not None:
                number = job.downloads
                job.downloads += 1
            else:
                number = self._anonymous_downloads
                self._anonymous_downloads += 1
            fault = self._decide(self._faults.download, "download", generation_id, number)
            if fault is not None and fault in _PRE_FAULTS:
                return self._pre_fault(fault, path, rid, now)
            if job is not None and job.forgotten_at is None:
                self._advance(job.owner, now)
            if job is None or job.outcome != "completed" or job.ledger_status(now) != "completed":
                return self._error(404, "File not found", path, rid, now)
            video = sample_video()
            total = len(video)
            headers = [
                ("content-type", "video/mp4"),
                ("accept-ranges", "bytes"),
                ("etag", f'"{job.id}"'),
                ("x-request-id", rid),
            ]
            status = 200
            body = video
            if range_header:
                parsed = _parse_range(range_header, total)
                if parsed is None:
                    headers = [("content-range", f"bytes */{total}"), ("x-request-id", rid)]
                    return self._reply(416, b"", headers)
                start, end = parsed
                body = video[start : end + 1]
                status = 206
                headers.append(("content-range", f"bytes {start}-{end}/{total}"))
            reply = self._reply(status, body, headers, fault)
            if method == "HEAD":
                return reply
            if fault == "slow_response":
                reply.delay = self._config.faults.slow_response_delay
            elif fault == "truncated_download":
                cut = _hash_floats(f"{self._config.seed}|cut|{generation_id}|{number}", 1)[0]
                reply.action = "truncate"
                reply.truncate_at = int(len(body) * (0.1 + 0.8 * cut))
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
        return Reply(status, _dumps(doc), headers)

    # ------------------------------------------------------------------ internals

    def _burst(self) -> float:
        config = self._config
        if config.rate_limit_burst is not None:
            return config.rate_limit_burst
        return max(1.0, config.rate_limit or 1.0)

    def _key_state(self, key: str, now: float) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            label = hashlib.sha256(key.encode()).hexdigest()[:10]
            state = _KeyState(label, self._burst(), now)
            self._keys[key] = state
        return state

    def _gate(
        self, path: str, authorization: str | None, now: float, rid: str
    ) -> tuple[_KeyState | None, Reply | None]:
        """Authenticate and rate-limit; return the key state or a refusal."""
        key = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                key = value.strip()
        if key is None:
            message = "Missing API key: send 'Authorization: Bearer <your API key>'"
            return None, self._error(401, message, path, rid, now)
        expected = self._config.api_key
        if expected is not None and key != expected:
            return None, self._error(401, "Invalid API key", path, rid, now)
        state = self._key_state(key, now)
        wait = self._take_token(state, now)
        if wait is not None:
            self._ledger.rate_limited += 1
            message = "Too many requests: the rate limit of this API key was exceeded"
            headers = [("retry-after", self._retry_after_text(wait))]
            return None, self._error(429, message, path, rid, now, headers=headers)
        return state, None

    def _take_token(self, state: _KeyState, now: float) -> float | None:
        """Take a token; return ``None`` or the wall seconds until one is available."""
        limit = self._config.rate_limit
        if limit is None:
            return None
        rate = limit / self._config.time_scale
        capacity = self._burst()
        tokens = min(capacity, state.tokens + max(0.0, now - state.refilled_at) * rate)
        state.refilled_at = now
        if tokens >= 1.0 - 1e-6:  # tolerate float rounding of epoch timestamps
            state.tokens = max(0.0, tokens - 1.0)
            return None
        state.tokens = tokens
        return (1.0 - tokens) / rate

    def _retry_after_text(self, wall_seconds: float) -> str:
        if self._config.time_scale >= 1.0:
            return str(max(1, math.ceil(wall_seconds - 1e-9)))
        # Round up to the millisecond so a client that waits exactly this long gets a token.
        millis = max(1, math.ceil(wall_seconds * 1000.0 - 1e-6))
        return f"{millis / 1000.0:.3f}".rstrip("0").rstrip(".")

    def _decide(
        self,
        table: tuple[tuple[float, FaultKind], ...],
        kind: str,
        identity: str,
        number: int,
    ) -> FaultKind | None:
        if not table:
            return None
        draw = _hash_floats(f"{self._config.seed}|{kind}|{identity}|{number}", 1)[0]
        for cumulative, fault in table:
            if draw < cumulative:
                return fault
        return None

    def _advance(self, state: _KeyState, now: float) -> None:
        """Run the key's simulation up to ``now``: finish jobs, start queued ones."""
        heap = state.running
        if not heap or heap[0][0] > now:
            return
        limit = self._config.max_concurrent
        queue = state.queue
        while heap and heap[0][0] <= now:
            freed_at, _, _ = heapq.heappop(heap)
            while queue and (limit is None or len(heap) < limit):
                self._start(state, queue.popleft(), freed_at)

    def _fill(self, state: _KeyState, now: float) -> None:
        limit = self._config.max_concurrent
        while state.queue and (limit is None or len(state.running) < limit):
            self._start(state, state.queue.popleft(), now)

    @staticmethod
    def _start(state: _KeyState, job: Job, at: float) -> None:
        started = max(at, job.ready_at)
        job.started_at = started
        finished = started + job.gen_time
        job.finished_at = finished
        heapq.heappush(state.running, (finished, job.seq, job))

    def _create_job(
        self,
        state: _KeyState,
        path: str,
        model: str,
        body: dict[str, Any],
        identity: str,
        clip: int,
        cost: int,
        now: float,
    ) -> Job:
        config = self._config
        ledger = self._ledger
        while True:
            index = self._created_per_body[identity]
            self._created_per_body[identity] += 1
            raw = hashlib.blake2b(
                f"{config.seed}|id|{identity}|{index}".encode(), digest_size=16
            ).digest()
            generation_id = str(uuid.UUID(bytes=raw, version=4))
            if generation_id not in ledger.generations:
                break
        u_outcome, u1, u2, u_error = _hash_floats(f"{config.seed}|job|{generation_id}", 4)
        faults = config.faults
        outcome: Outcome = "completed"
        if u_outcome < faults.job_error:
            outcome = "error"
            ledger.faults_injected["job_error"] += 1
        elif u_outcome < faults.job_error + faults.completed_without_url:
            outcome = "no_url"
            ledger.faults_injected["completed_without_url"] += 1
        seconds = generation_seconds(model, clip, _normal(u1, u2)) * config.generation_time_factor
        if outcome == "error":
            seconds *= 0.2 + 0.6 * u1  # failures tend to surface before the full run time
        prompt = body.get("prompt")
        self._seq += 1
        job = Job(
            id=generation_id,
            seq=self._seq,
            owner=state,
            path=path,
            model=model,
            prompt=prompt if isinstance(prompt, str) else "",
            body=body,
            created_at=now,
            ready_at=now + config.queue_delay * config.time_scale,
            gen_time=seconds * config.time_scale,
            outcome=outcome,
            error_index=int(u_error * len(_JOB_ERRORS)),
            credits=cost,
        )
        self._jobs[generation_id] = job
        ledger.generations[generation_id] = job
        ledger.generations_created += 1
        ledger.credits_charged += cost
        state.charged += cost
        self._advance(state, now)
        limit = config.max_concurrent
        if not state.queue and (limit is None or len(state.running) < limit):
            self._start(state, job, now)
        else:
            state.queue.append(job)
        return job

    def _generation_doc(self, job: Job, status: str, base_url: str) -> dict[str, Any]:
        video: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        meta: dict[str, Any] | None = None
        if status == "completed":
            if job.outcome != "no_url":
                base = (self._config.video_base_url or base_url).rstrip("/")
                video = {"url": f"{base}{CDN_PREFIX}{job.id}.mp4"}
            usage: dict[str, Any] = {"credits_used": job.credits}
            if job.path == VENDOR_PATH:
                # The vendor path's (older) schema names the same number ``tokens_used``.
                usage["tokens_used"] = job.credits
            meta = {"usage": usage}
        elif status == "error":
            name, message = _JOB_ERRORS[job.error_index]
            error = {"name": name, "message": message}
        return {"id": job.id, "status": status, "video": video, "error": error, "meta": meta}

    def _finish_api_reply(
        self, status: int, doc: dict[str, Any], rid: str, fault: FaultKind | None
    ) -> Reply:
        body = _dumps(doc)
        headers = [("content-type", "application/json"), ("x-request-id", rid)]
        if fault == "malformed_json":
            body = body[: max(1, len(body) // 2)]
        reply = self._reply(status, body, headers, fault)
        if fault == "slow_response":
            reply.delay = self._config.faults.slow_response_delay
        elif fault == "lost_create":
            reply.action = "reset"
        return reply

    def _reply(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
        fault: FaultKind | None = None,
    ) -> Reply:
        if fault is not None:
            self._ledger.faults_injected[fault] += 1
        if fault not in ("connection_reset", "lost_create"):
            self._ledger.responses_by_status[status] += 1
        return Reply(status, body, headers, fault=fault)

    def _error(
        self,
        status: int,
        message: str,
        path: str,
        rid: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        extra: Mapping[str, Any] | None = None,
        fault: FaultKind | None = None,
    ) -> Reply:
        doc: dict[str, Any] = {
            "message": message,
            "path": path,
            "requestId": rid,
            "statusCode": status,
            "timestamp": _iso(now),
        }
        if extra:
            doc.update(extra)
        all_headers = [("content-type", "application/json"), ("x-request-id", rid), *headers]
        return self._reply(status, _dumps(doc), all_headers, fault)

    def _validation_error(
        self,
        path: str,
        rid: str,
        now: float,
        errors: list[FieldError],
        message: str = "Body validation error",
    ) -> Reply:
        return self._error(400, message, path, rid, now, extra={"errors": errors})

    def _pre_fault(self, fault: FaultKind, path: str, rid: str, now: float) -> Reply:
        """A fault answered instead of processing the request."""
        faults = self._config.faults
        if fault == "rate_limit":
            self._ledger.rate_limited += 1
            wait = faults.retry_after * self._config.time_scale
            headers = [("retry-after", self._retry_after_text(wait))]
            message = "Too many requests, please retry later"
            return self._error(429, message, path, rid, now, headers=headers, fault=fault)
        if fault == "rate_limit_no_retry_after":
            self._ledger.rate_limited += 1
            message = "Too many requests, please retry later"
            return self._error(429, message, path, rid, now, fault=fault)
        if fault == "server_error":
            return self._error(500, "Internal server error", path, rid, now, fault=fault)
        if fault == "bad_gateway":
            headers = [("content-type", "text/html"), ("x-request-id", rid)]
            return self._reply(502, _BAD_GATEWAY_HTML, headers, fault)
        if fault == "service_unavailable":
            message = "Service temporarily unavailable"
            return self._error(503, message, path, rid, now, fault=fault)
        if fault == "gateway_timeout":
            return self._error(504, "Generation timeout", path, rid, now, fault=fault)
        # connection_reset
        reply = self._reply(0, b"", [("x-request-id", rid)], fault)
        reply.action = "reset"
        return reply


_PRE_FAULTS: frozenset[FaultKind] = frozenset(
    {
        "rate_limit",
        "rate_limit_no_retry_after",
        "server_error",
        "bad_gateway",
        "service_unavailable",
        "gateway_timeout",
        "connection_reset",
    }
)


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range; ``None`` if unsatisfiable or unsupported."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return None
            return max(0, total - length), total - 1
        start = int(first)
        end = int(last) if last else total - 1
    except ValueError:
        return None
    if start >= total or end < start:
        return None
    return start, min(end, total - 1)


# Keep the two create paths importable from here for the app and tests.
API_PATHS: tuple[str, ...] = (VENDOR_PATH, UNIVERSAL_PATH)
