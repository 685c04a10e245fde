"""The emulator: its state and its controls (configure, restart, reset, stats).

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

The parts: :mod:`._jobs` (jobs, their cost and timing, the per-key simulation),
:mod:`._ledger` (what was seen and charged), :mod:`._faults` (which fault a request gets),
:mod:`._limits` (keys and the token bucket), :mod:`._replies` (reply shapes and error
bodies), :mod:`._handlers` (the request handlers); this module holds the state they share.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._config import EmulatorConfig, FaultConfig
from ._faults import FaultTable
from ._handlers import UNKNOWN_STATUSES, Handlers
from ._jobs import (
    Job,
    KeyState,
    advance,
    credits_for,
    fill,
    generation_seconds,
    sample_video,
)
from ._ledger import Ledger, duplicate_prompts
from ._limits import bucket_capacity
from ._replies import CDN_PREFIX, Reply
from ._validation import UNIVERSAL_PATH, VENDOR_PATH, SchemaRegistry

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


class Emulator(Handlers):
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
        self._faults = FaultTable.build(self._config.faults)
        self._app: Starlette | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._ledger = Ledger()
        self._jobs: dict[str, Job] = {}
        self._keys: dict[str, KeyState] = {}
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
                advance(state, now, self._config.max_concurrent)
            self._config = new
            self._faults = FaultTable.build(new.faults)
            burst = bucket_capacity(self._config)
            for state in self._keys.values():
                state.tokens = min(state.tokens, burst)
                fill(state, now, new.max_concurrent)
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
                advance(state, now, self._config.max_concurrent)
            for job in self._jobs.values():
                job.forgotten_at = now
            self._jobs.clear()
            for state in self._keys.values():
                state.running.clear()
                state.queue.clear()
                state.tokens = bucket_capacity(self._config)
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
                advance(state, now, self._config.max_concurrent)
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
                advance(job.owner, now, self._config.max_concurrent)
            return job.record(now)


# Keep the two create paths importable from here for the app and tests.
API_PATHS: tuple[str, ...] = (VENDOR_PATH, UNIVERSAL_PATH)
