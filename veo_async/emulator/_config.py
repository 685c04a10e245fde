"""Configuration of the emulator: timings, limits, credits and fault-injection rates.

Both models are pydantic models so the same validation applies to Python callers, to the
``POST /_emulator/config`` control endpoint (a JSON patch) and to the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CREATE_FAULTS",
    "DOWNLOAD_FAULTS",
    "FAULT_KINDS",
    "GENERATION_FAULTS",
    "MIXED_FAULTS",
    "POLL_FAULTS",
    "EmulatorConfig",
    "FaultConfig",
    "FaultKind",
]

FaultKind = Literal[
    "rate_limit",
    "rate_limit_no_retry_after",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "gateway_timeout",
    "connection_reset",
    "slow_response",
    "malformed_json",
    "unknown_status",
    "job_error",
    "completed_without_url",
    "lost_create",
    "truncated_download",
]
"""Names of the injectable faults (also the field names of :class:`FaultConfig`)."""

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every fault kind, in a fixed order."""

_GATEWAY: tuple[FaultKind, ...] = (
    "rate_limit",
    "rate_limit_no_retry_after",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "gateway_timeout",
    "connection_reset",
    "slow_response",
    "malformed_json",
)

CREATE_FAULTS: tuple[FaultKind, ...] = (*_GATEWAY, "lost_create")
"""Faults a create request (``POST``) is eligible for."""

POLL_FAULTS: tuple[FaultKind, ...] = (*_GATEWAY, "unknown_status")
"""Faults a poll request (``GET ?generation_id=``) is eligible for."""

DOWNLOAD_FAULTS: tuple[FaultKind, ...] = (
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "connection_reset",
    "slow_response",
    "truncated_download",
)
"""Faults a video download from the CDN path is eligible for."""

GENERATION_FAULTS: tuple[FaultKind, ...] = ("job_error", "completed_without_url")
"""Faults decided once per generation, when it is created (its final outcome)."""

MIXED_FAULTS: tuple[FaultKind, ...] = (
    "rate_limit",
    "rate_limit_no_retry_after",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "gateway_timeout",
    "connection_reset",
    "malformed_json",
    "unknown_status",
    "truncated_download",
)
"""The transient kinds :meth:`FaultConfig.mixed` spreads its rate over."""

_Rate = Field(default=0.0, ge=0.0, le=1.0)


class FaultConfig(BaseModel):
    """Probability of each injected fault, per eligible request (or per generation).

    Each rate is the probability that one eligible request gets that fault; the rates a
    request class is eligible for (see :data:`CREATE_FAULTS`, :data:`POLL_FAULTS`,
    :data:`DOWNLOAD_FAULTS`, :data:`GENERATION_FAULTS`) must add up to at most 1.
    Decisions are drawn from a hash of the emulator seed and the request's identity, so
    a run is reproducible.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rate_limit: float = _Rate
    """429 with a ``Retry-After`` header (``retry_after`` simulated seconds)."""
    rate_limit_no_retry_after: float = _Rate
    """429 without ``Retry-After``."""
    server_error: float = _Rate
    """500 with a JSON error body."""
    bad_gateway: float = _Rate
    """502 with an HTML error page (as a proxy in front of the API would send)."""
    service_unavailable: float = _Rate
    """503 with a JSON error body."""
    gateway_timeout: float = _Rate
    """504 ``Generation timeout``; on a create it makes no job unless
    ``gateway_timeout_creates_job``."""
    connection_reset: float = _Rate
    """The connection is reset (TCP RST) before any response byte."""
    slow_response: float = _Rate
    """The response is sent after ``slow_response_delay`` real seconds; the request is
    processed normally (a create makes its job)."""
    malformed_json: float = _Rate
    """200 with a cut-off JSON body; the request is processed (a create makes its job)."""
    unknown_status: float = _Rate
    """A poll answers with a status string outside the documented set."""
    job_error: float = _Rate
    """The generation ends in ``error`` with an error object."""
    completed_without_url: float = _Rate
    """The generation ends ``completed`` but with ``video: null``."""
    lost_create: float = _Rate
    """The job is made and charged, then the connection is reset before the response."""
    truncated_download: float = _Rate
    """The download's Content-Length is the full size but the body stops short and the
    connection is closed."""

    slow_response_delay: float = Field(default=5.0, ge=0.0)
    """Delay of a ``slow_response`` in real seconds (not scaled by ``time_scale``)."""
    retry_after: float = Field(default=2.0, ge=0.0)
    """Retry-After of an injected ``rate_limit`` fault, in simulated seconds."""
    gateway_timeout_creates_job: bool = False
    """When true, a create answered with an injected 504 still makes (and charges) its job."""

    @model_validator(mode="after")
    def _check_sums(self) -> FaultConfig:
        for name, kinds in (
            ("create", CREATE_FAULTS),
            ("poll", POLL_FAULTS),
            ("download", DOWNLOAD_FAULTS),
            ("generation", GENERATION_FAULTS),
        ):
            total = sum(self.rate(kind) for kind in kinds)
            if total > 1.0 + 1e-9:
                raise ValueError(f"fault rates for a {name} add up to {total:.3f}, more than 1")
        return self

    def rate(self, kind: FaultKind) -> float:
        """Return the configured probability of ``kind``."""
        value = getattr(self, kind)
        assert isinstance(value, float)
        return value

    @property
    def active(self) -> dict[FaultKind, float]:
        """The fault kinds with a non-zero rate."""
        return {kind: self.rate(kind) for kind in FAULT_KINDS if self.rate(kind) > 0}

    @classmethod
    def mixed(cls, rate: float, **overrides: Any) -> FaultConfig:
        """Spread a total transient fault rate over the transient kinds.

        A poll, a create and a download each see about ``rate`` total probability of a
        transient fault (429s, 5xx, reset, malformed JSON, unknown status on polls,
        truncation on downloads). Slow responses, lost creates and failed generations
        are left at 0; pass them in ``overrides`` (e.g. ``lost_create=0.01``).
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        share = rate / 9.0
        rates: dict[str, Any] = {
            kind: share for kind in MIXED_FAULTS if kind != "truncated_download"
        }
        # A download is eligible for server_error, bad_gateway, service_unavailable and
        # connection_reset (4 shares); truncation makes up the rest of ``rate``.
        rates["truncated_download"] = max(0.0, rate - 4 * share)
        rates.update(overrides)
        return cls.model_validate(rates)


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told: keys, timings, limits, credits and faults.

    All durations are in *simulated* seconds and are multiplied by ``time_scale`` to get
    wall-clock seconds (``time_scale=0.01`` makes a 45 s job take 0.45 s), except
    ``FaultConfig.slow_response_delay`` which is in real seconds.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_key: str | None = None
    """The one accepted API key; ``None`` accepts any non-empty Bearer key (each key is
    its own account for limits and credits)."""
    time_scale: float = Field(default=1.0, gt=0.0)
    """Wall seconds per simulated second."""
    seed: int = 0
    """Seed of every random decision (ids, generation times, faults)."""
    rate_limit: float | None = Field(default=None, gt=0.0)
    """Requests (creates and polls) per simulated second per key; ``None`` is unlimited."""
    rate_limit_burst: float | None = Field(default=None, ge=1.0)
    """Token-bucket capacity; defaults to ``max(1, rate_limit)``."""
    max_concurrent: int | None = Field(default=None, ge=1)
    """Generations per key that may be generating at once; the rest stay ``queued``."""
    credits: int | None = Field(default=None, ge=0)
    """Credit balance of each key; creates that would exceed it get 403. ``None`` is
    unlimited. Lowering it mid-run makes later creates fail."""
    queue_delay: float = Field(default=1.0, ge=0.0)
    """Simulated seconds a generation stays ``queued`` before it can start."""
    generation_time_factor: float = Field(default=1.0, gt=0.0)
    """Multiplies every simulated generation time (before ``time_scale``)."""
    video_base_url: str | None = None
    """Base URL of the CDN in ``video.url``; default: the base URL of the request."""
    vendor_create_status: int = Field(default=201, ge=200, le=299)
    """Success code of a create on ``/v2/generate/video/google/generation``."""
    universal_create_status: int = Field(default=200, ge=200, le=299)
    """Success code of a create on ``/v2/video/generations``."""
    faults: FaultConfig = Field(default_factory=FaultConfig)
    """Fault-injection rates."""

    def patched(self, patch: Mapping[str, Any]) -> EmulatorConfig:
        """Return a copy with ``patch`` applied; ``faults`` is merged key by key.

        Raises :class:`pydantic.ValidationError` for unknown keys or bad values.
        """
        data = self.model_dump()
        for key, value in patch.items():
            if key == "faults" and isinstance(value, Mapping):
                data["faults"] = {**data["faults"], **dict(value)}
            else:
                data[key] = value
        return EmulatorConfig.model_validate(data)
