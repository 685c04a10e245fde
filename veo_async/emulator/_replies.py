"""Replies: what the HTTP layer sends, in the provider's documented shapes.

:class:`Reply` is the status, headers, body and what to do with the connection;
:class:`Replies` builds them for the emulator (API documents, error bodies, injected
faults) and counts each in the ledger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ._config import EmulatorConfig, FaultKind
from ._jobs import JOB_ERRORS, Job, sample_video
from ._ledger import Ledger
from ._validation import VENDOR_PATH, FieldError

CDN_PREFIX = "/cdn/generations/"
"""Path prefix of the emulated CDN; a video is at ``/cdn/generations/<id>.mp4``."""

_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Action = Literal["respond", "reset", "truncate"]


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


def iso(ts: float) -> str:
    """An epoch time as the provider's ISO 8601 timestamp (milliseconds, ``Z``)."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(doc: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_text(wall_seconds: float, time_scale: float) -> str:
    """A ``Retry-After`` value for a wait of ``wall_seconds``."""
    if time_scale >= 1.0:
        return str(max(1, math.ceil(wall_seconds - 1e-9)))
    # Round up to the millisecond so a client that waits exactly this long gets a token.
    millis = max(1, math.ceil(wall_seconds * 1000.0 - 1e-6))
    return f"{millis / 1000.0:.3f}".rstrip("0").rstrip(".")


def parse_range(header: str, total: int) -> tuple[int, int] | None:
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


class Replies:
    """Builds the emulator's replies and counts them in the ledger (a mixin of the emulator)."""

    _config: EmulatorConfig
    _ledger: Ledger

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
            name, message = JOB_ERRORS[job.error_index]
            error = {"name": name, "message": message}
        return {"id": job.id, "status": status, "video": video, "error": error, "meta": meta}

    def _finish_api_reply(
        self, status: int, doc: dict[str, Any], rid: str, fault: FaultKind | None
    ) -> Reply:
        body = dumps(doc)
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
            "timestamp": iso(now),
        }
        if extra:
            doc.update(extra)
        all_headers = [("content-type", "application/json"), ("x-request-id", rid), *headers]
        return self._reply(status, dumps(doc), all_headers, fault)

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
            headers = [("retry-after", retry_after_text(wait, self._config.time_scale))]
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

    def _key_leak(self, path: str, rid: str, now: float) -> Reply:
        """A CDN request that carried an API key: counted as a leak, refused."""
        self._ledger.cdn_requests_with_authorization += 1
        return self._error(
            403,
            "The CDN does not take API keys: an Authorization header was sent to "
            "the video host (the key leaked)",
            path,
            rid,
            now,
        )

    def _video_reply(
        self, job: Job, rid: str, range_header: str | None, fault: FaultKind | None
    ) -> Reply:
        """The sample video (or the asked-for range of it, or a 416)."""
        video = sample_video()
        total = len(video)
        headers = [
            ("content-type", "video/mp4"),
            ("accept-ranges", "bytes"),
            ("etag", f'"{job.id}"'),
            ("x-request-id", rid),
        ]
        if not range_header:
            return self._reply(200, video, headers, fault)
        parsed = parse_range(range_header, total)
        if parsed is None:
            headers = [("content-range", f"bytes */{total}"), ("x-request-id", rid)]
            return self._reply(416, b"", headers)
        start, end = parsed
        headers.append(("content-range", f"bytes {start}-{end}/{total}"))
        return self._reply(206, video[start : end + 1], headers, fault)
