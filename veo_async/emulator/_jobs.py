"""Jobs and their simulation: what a generation costs, how long it takes, when it runs.

A :class:`Job` is both simulation state and ledger entry; :func:`new_job` draws its outcome
and run time from hashes of the seed and its id. Each API key has a
:class:`KeyState`: a heap of running jobs (by finish time) and a FIFO queue; nothing runs in
the background, so :func:`advance` replays a key's jobs up to "now" on each request.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from ._config import EmulatorConfig
from ._faults import hash_floats, normal

if TYPE_CHECKING:
    from ._ledger import Ledger

Outcome = Literal["completed", "error", "no_url"]

JOB_ERRORS: tuple[tuple[str, str], ...] = (
    ("GenerationError", "The model failed to generate the video. Please try again."),
    ("ContentPolicyViolation", "The request was blocked by the provider's safety filters."),
    ("UpstreamError", "The upstream model provider returned an internal error."),
)
"""The error a failed job reports, picked by :attr:`Job.error_index`."""


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


class KeyState:
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
        owner: KeyState,
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


def start(state: KeyState, job: Job, at: float) -> None:
    """Start ``job`` at ``at`` (or when it is ready, if later): it now holds a slot."""
    started = max(at, job.ready_at)
    job.started_at = started
    finished = started + job.gen_time
    job.finished_at = finished
    heapq.heappush(state.running, (finished, job.seq, job))


def advance(state: KeyState, now: float, limit: int | None) -> None:
    """Run the key's simulation up to ``now``: finish jobs, start queued ones.

    A queued job starts at the exact time a slot freed, so the result does not depend on
    how often this is called.
    """
    heap = state.running
    if not heap or heap[0][0] > now:
        return
    queue = state.queue
    while heap and heap[0][0] <= now:
        freed_at, _, _ = heapq.heappop(heap)
        while queue and (limit is None or len(heap) < limit):
            start(state, queue.popleft(), freed_at)


def fill(state: KeyState, now: float, limit: int | None) -> None:
    """Start queued jobs now while slots are free (after the limit was raised)."""
    while state.queue and (limit is None or len(state.running) < limit):
        start(state, state.queue.popleft(), now)


def admit(state: KeyState, job: Job, now: float, limit: int | None) -> None:
    """A new job starts at once if nothing waits and a slot is free; else it queues."""
    advance(state, now, limit)
    if not state.queue and (limit is None or len(state.running) < limit):
        start(state, job, now)
    else:
        state.queue.append(job)


def new_job(
    config: EmulatorConfig,
    ledger: Ledger,
    *,
    id: str,
    seq: int,
    owner: KeyState,
    path: str,
    model: str,
    body: dict[str, Any],
    clip: int,
    cost: int,
    now: float,
) -> Job:
    """A new job: its outcome, run time and error drawn from hashes of the seed and its id.

    An injected outcome (``job_error``, ``completed_without_url``) is counted in the ledger.
    """
    u_outcome, u1, u2, u_error = hash_floats(f"{config.seed}|job|{id}", 4)
    outcome = _draw_outcome(u_outcome, config, ledger)
    seconds = generation_seconds(model, clip, normal(u1, u2)) * config.generation_time_factor
    if outcome == "error":
        seconds *= 0.2 + 0.6 * u1  # failures tend to surface before the full run time
    prompt = body.get("prompt")
    return Job(
        id=id,
        seq=seq,
        owner=owner,
        path=path,
        model=model,
        prompt=prompt if isinstance(prompt, str) else "",
        body=body,
        created_at=now,
        ready_at=now + config.queue_delay * config.time_scale,
        gen_time=seconds * config.time_scale,
        outcome=outcome,
        error_index=int(u_error * len(JOB_ERRORS)),
        credits=cost,
    )


def _draw_outcome(draw: float, config: EmulatorConfig, ledger: Ledger) -> Outcome:
    """How a new job will end, from its draw; an injected outcome is counted now."""
    faults = config.faults
    if draw < faults.job_error:
        ledger.faults_injected["job_error"] += 1
        return "error"
    if draw < faults.job_error + faults.completed_without_url:
        ledger.faults_injected["completed_without_url"] += 1
        return "no_url"
    return "completed"
