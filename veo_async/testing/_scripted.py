"""``ScriptedVeoAPI``: a clockless fake of the API whose job lifecycles you script.

Each created job follows the first :class:`Script` whose rule matches its request (a substring
of the prompt, or a predicate on the JSON body), else the default script. Progress is counted
in polls, not seconds, so tests are exact and instant (use with :func:`no_waiting`).

>>> api = ScriptedVeoAPI()                                             # doctest: +SKIP
>>> api.script("dragon", outcome="error", error="content policy")
>>> api.script("slow", polls=5)
>>> async with api.client() as client:
...     await client.generate(prompt="a slow snail")   # completes on the 5th poll
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .._client import AsyncVeoClient

__all__ = ["Script", "ScriptedVeoAPI"]

API_BASE = "https://api.veo.test"
CDN_BASE = "https://cdn.veo.test"
#: A small stand-in for an MP4 (an ``ftyp`` box and padding); not playable.
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 4072


@dataclass(frozen=True)
class Script:
    """How one job behaves.

    ``polls``: the poll on which the job reaches its outcome (1 = the first poll). Before
    that, polls return ``statuses`` in turn (repeating the last). ``outcome``: ``completed``,
    ``error`` (with ``error`` as the message) or ``no_video`` (completed without a URL).
    ``create_status``: answer the create with this HTTP status instead (400, 401, 403, 429,
    500, ...), creating nothing. ``credits``: reported in ``meta.usage``.
    """

    polls: int = 1
    outcome: Literal["completed", "error", "no_video"] = "completed"
    error: str = "generation failed"
    statuses: Sequence[str] = ("queued", "generating")
    create_status: int | None = None
    credits: float = 120000


Rule = Callable[[Mapping[str, Any]], bool]


@dataclass
class _Job:
    id: str
    body: dict[str, Any]
    script: Script
    polls: int = 0


@dataclass
class ScriptedVeoAPI:
    """The fake service. ``created`` lists every accepted create body; ``jobs`` by id."""

    default: Script = field(default_factory=Script)
    video: bytes = FAKE_MP4
    created: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    _rules: list[tuple[Rule, Script]] = field(default_factory=list)
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def script(self, match: str | Rule, script: Script | None = None, **fields: Any) -> Script:
        """Add a rule: jobs whose prompt contains ``match`` (or for which it returns true)
        follow ``script`` (or a :class:`Script` built from ``fields``). First match wins."""
        chosen = script if script is not None else Script(**fields)
        if isinstance(match, str):
            needle = match

            def rule(body: Mapping[str, Any]) -> bool:
                return needle in str(body.get("prompt", ""))

            self._rules.append((rule, chosen))
        else:
            self._rules.append((match, chosen))
        return chosen

    @property
    def jobs(self) -> Mapping[str, _Job]:
        """Created jobs by generation id (``.polls`` counts status requests)."""
        return self._jobs

    @property
    def transport(self) -> httpx.MockTransport:
        """An ``httpx.MockTransport`` serving the API and the CDN."""
        return httpx.MockTransport(self._handle)

    def client(self, **options: Any) -> AsyncVeoClient:
        """An :class:`~veo_async.AsyncVeoClient` wired to this fake (use it with ``async with``)."""
        http = httpx.AsyncClient(transport=self.transport)
        client = AsyncVeoClient(
            options.pop("api_key", "test-key"),
            base_url=options.pop("base_url", API_BASE),
            http_client=http,
            **options,
        )
        original_aclose = client.aclose

        async def aclose() -> None:
            await original_aclose()
            await http.aclose()

        client.aclose = aclose  # type: ignore[method-assign]
        return client

    # ------------------------------------------------------------------ handlers

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == httpx.URL(CDN_BASE).host:
            if "authorization" in request.headers:
                return _error(403, "the CDN must not receive an Authorization header")
            return httpx.Response(
                200,
                content=self.video,
                headers={"Content-Type": "video/mp4", "Content-Length": str(len(self.video))},
            )
        if request.headers.get("authorization", "") in ("", "Bearer "):
            return _error(401, "missing API key")
        if request.method == "POST":
            return self._create(request)
        if request.method == "GET":
            return self._poll(request)
        return _error(405, "method not allowed")

    def _create(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "Body validation error")
        if not isinstance(body, dict) or not body.get("prompt") or not body.get("model"):
            return _error(400, "Body validation error")
        script = next((s for rule, s in self._rules if rule(body)), self.default)
        if script.create_status is not None:
            headers = {"Retry-After": "1"} if script.create_status == 429 else {}
            return _error(script.create_status, "scripted failure", headers)
        gid = f"gen-{next(self._ids):06d}"
        self._jobs[gid] = _Job(gid, body, script)
        self.created.append(body)
        return httpx.Response(200, json=_generation(gid, "queued"))

    def _poll(self, request: httpx.Request) -> httpx.Response:
        gid = request.url.params.get("generation_id")
        job = self._jobs.get(gid or "")
        if job is None:
            return _error(404, f"generation {gid!r} not found")
        job.polls += 1
        s = job.script
        if job.polls < s.polls:
            statuses = list(s.statuses) or ["generating"]
            status = statuses[min(job.polls - 1, len(statuses) - 1)]
            return httpx.Response(200, json=_generation(job.id, status))
        if s.outcome == "error":
            doc = _generation(job.id, "error")
            doc["error"] = {"name": "GenerationError", "message": s.error}
            return httpx.Response(200, json=doc)
        doc = _generation(job.id, "completed")
        doc["meta"] = {"usage": {"credits_used": s.credits}}
        if s.outcome == "completed":
            doc["video"] = {"url": f"{CDN_BASE}/generations/{job.id}.mp4"}
        return httpx.Response(200, json=doc)


def _generation(gid: str, status: str) -> dict[str, Any]:
    return {"id": gid, "status": status, "video": None, "error": None, "meta": None}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        json={"message": message, "statusCode": status, "requestId": f"req-{status}"},
        headers=dict(headers or {}),
    )
