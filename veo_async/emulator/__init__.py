"""A local emulator of the AI/ML API's Google Veo video-generation service.

It answers both create paths and both poll paths with the provider's request validation,
simulates generation times, per-key concurrency and rate limits and credits, serves a real
MP4 from an emulated CDN, injects faults reproducibly from a seed, and keeps a ledger of
everything it did. Run it in process (``create_app`` with ``httpx.ASGITransport``), in a
thread (:class:`EmulatorServer`), as a subprocess (:class:`EmulatorProcess`) or from the
command line (``python -m veo_async.emulator``).

Needs the optional dependencies: ``pip install 'veo-async[emulator]'``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "veo_async.emulator needs starlette and uvicorn: pip install 'veo-async[emulator]'"
    ) from exc

from ._app import TRANSPORT_EXTENSION, create_app
from ._cli import build_parser, main
from ._config import (
    CREATE_FAULTS,
    DOWNLOAD_FAULTS,
    FAULT_KINDS,
    GENERATION_FAULTS,
    MIXED_FAULTS,
    POLL_FAULTS,
    EmulatorConfig,
    FaultConfig,
    FaultKind,
)
from ._server import URL_LINE_PREFIX, EmulatorProcess, EmulatorServer, serve
from ._state import (
    CDN_PREFIX,
    UNKNOWN_STATUSES,
    Clock,
    Emulator,
    Job,
    Ledger,
    Reply,
    credits_for,
    duplicate_prompts,
    generation_seconds,
    sample_video,
)
from ._validation import UNIVERSAL_PATH, VENDOR_PATH, FieldError, SchemaRegistry

__all__ = [
    "CDN_PREFIX",
    "CREATE_FAULTS",
    "DOWNLOAD_FAULTS",
    "FAULT_KINDS",
    "GENERATION_FAULTS",
    "MIXED_FAULTS",
    "POLL_FAULTS",
    "TRANSPORT_EXTENSION",
    "UNIVERSAL_PATH",
    "UNKNOWN_STATUSES",
    "URL_LINE_PREFIX",
    "VENDOR_PATH",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "FaultConfig",
    "FaultKind",
    "FieldError",
    "Job",
    "Ledger",
    "Reply",
    "SchemaRegistry",
    "build_parser",
    "create_app",
    "credits_for",
    "duplicate_prompts",
    "generation_seconds",
    "main",
    "sample_video",
    "serve",
]
