"""Fault matrix against the emulator as a real server (uvicorn on a loopback port).

Every fault the emulator can inject, alone and mixed, for single calls (submit / get / wait /
download) and for batches. Each case checks two things:

* the behaviour the docs promise: a typed error, or a retried success;
* the emulator's ledger: no prompt has two generations (the SDK never resubmits an uncertain
  create), and every generation in the ledger is accounted for by an id the SDK returned or by
  a create it reported as of unknown outcome (``CreateOutcomeUnknownError``).

The emulator runs time-compressed (``SCALE``); the client gets ``PollPolicy(time_scale=SCALE)``
and short backoffs so the whole module stays within seconds.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from veo_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncVeoClient,
    AuthenticationError,
    BatchResult,
    CreateOutcomeUnknownError,
    DownloadIntegrityError,
    GenerationFailedError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PollPolicy,
    RateLimitError,
    RetryConfig,
    ServerError,
    VeoError,
    WaitTimeoutError,
)
from veo_async.emulator import (
    UNKNOWN_STATUSES,
    EmulatorConfig,
    EmulatorServer,
    FaultConfig,
    credits_for,
    sample_video,
)

SCALE = 0.01
KEY = "sk-fault-matrix-0123456789"
SLOW = 1.5  # real seconds of an injected slow response (longer than the client timeout)
TIMEOUT = httpx.Timeout(1.0, connect=2.0)
RETRY = RetryConfig(max_attempts=5, initial_backoff=0.02, max_backoff=0.05, max_retry_after=0.05)
VEO2_COST = credits_for("veo2", 5)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One real emulator server for the module (reset before each test)."""
    with EmulatorServer(EmulatorConfig(time_scale=SCALE, seed=7)) as srv:
        yield srv


@pytest.fixture
def emu(server: EmulatorServer) -> EmulatorServer:
    """The server, reset to a clean ledger, no faults and default config."""
    server.reset()
    server.configure(api_key=None, credits=None, max_concurrent=None, rate_limit=None)
    server.emulator.set_faults(FaultConfig(slow_response_delay=SLOW))
    return server


def make_client(base_url: str, **options: Any) -> AsyncVeoClient:
    """A client tuned for the time-compressed emulator."""
    opts: dict[str, Any] = {
        "base_url": base_url,
        "retry": RETRY,
        "timeout": TIMEOUT,
        "poll_policy": PollPolicy(time_scale=SCALE),
    }
    opts.update(options)
    return AsyncVeoClient(opts.pop("api_key", KEY), **opts)


@pytest.fixture
async def client(emu: EmulatorServer) -> AsyncIterator[AsyncVeoClient]:
    """A client on the emulator."""
    async with make_client(emu.base_url) as c:
        yield c


def set_fault(emu: EmulatorServer, kind: str, rate: float = 1.0, **extra: Any) -> None:
    """Only ``kind`` at ``rate`` (plus ``extra`` settings)."""
    settings: dict[str, Any] = {"slow_response_delay": SLOW, **extra, kind: rate}
    emu.emulator.set_faults(FaultConfig(**settings))


def clear_faults(emu: EmulatorServer) -> None:
    """No faults."""
    emu.emulator.set_faults(FaultConfig(slow_response_delay=SLOW))


async def clear_after_first(emu: EmulatorServer, kind: str) -> None:
    """Wait until ``kind`` was injected once, then turn every fault off."""
    with anyio.fail_after(10):
        # the ledger lives in the server thread: nothing to wait on but the counter
        while emu.emulator.ledger.faults_injected[kind] < 1:  # noqa: ASYNC110
            await anyio.sleep(0.001)
    clear_faults(emu)


def assert_ledger_accounted(
    emu: EmulatorServer, returned_ids: set[str], uncertain_prompts: set[str]
) -> dict[str, Any]:
    """No duplicate prompts; every generation is a returned id or an uncertain prompt."""
    stats = emu.stats()
    assert stats["duplicate_prompts"] == {}
    for g in stats["generations"]:
        assert g["id"] in returned_ids or g["prompt"] in uncertain_prompts, g
    assert stats["cdn_requests_with_authorization"] == 0
    return stats


# ---------------------------------------------------------------------------- single: create

#: create faults that must surface as CreateOutcomeUnknownError, and whether the emulator made
#: (and charged) a job behind the failed response.
UNKNOWN_OUTCOME_CREATES = {
    "server_error": False,
    "bad_gateway": False,
    "gateway_timeout": False,
    "connection_reset": False,
    "slow_response": True,
    "malformed_json": True,
    "lost_create": True,
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(UNKNOWN_OUTCOME_CREATES))
async def test_create_fault_of_unknown_outcome_is_reported_not_retried(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """An ambiguous create failure raises CreateOutcomeUnknownError after exactly one request."""
    set_fault(emu, kind)
    with pytest.raises(CreateOutcomeUnknownError) as info:
        await client.submit(prompt=f"create {kind}")
    err = info.value
    assert err.request is not None and err.request.prompt == f"create {kind}"
    assert isinstance(err.__cause__, VeoError)
    if kind in ("server_error", "bad_gateway", "gateway_timeout"):
        assert isinstance(err.__cause__, ServerError)
    elif kind == "malformed_json":
        assert isinstance(err.__cause__, InvalidResponseError)
    else:
        assert isinstance(err.__cause__, APIConnectionError)
        assert err.__cause__.request_sent
    stats = assert_ledger_accounted(emu, set(), {f"create {kind}"})
    assert stats["create_requests"] == 1
    assert stats["generations_created"] == int(UNKNOWN_OUTCOME_CREATES[kind])


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["rate_limit", "rate_limit_no_retry_after", "service_unavailable"])
async def test_create_refusal_is_retried_to_success(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """429 (with/without Retry-After) and 503 on create are retried; one generation results."""
    set_fault(emu, kind)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clear_after_first, emu, kind)
        generation = await client.submit(prompt=f"refused {kind}")
    stats = assert_ledger_accounted(emu, {generation.id}, set())
    assert stats["create_requests"] >= 2
    assert stats["generations_created"] == 1


@pytest.mark.anyio
async def test_create_503_every_time_gives_typed_error_and_no_job(
    emu: EmulatorServer, client: AsyncVeoClient
) -> None:
    """A create refused with 503 on every attempt raises ServerError; nothing was created."""
    set_fault(emu, "service_unavailable")
    with pytest.raises(ServerError) as info:
        await client.submit(prompt="always 503")
    assert info.value.status_code == 503
    stats = assert_ledger_accounted(emu, set(), set())
    assert stats["create_requests"] == RETRY.max_attempts
    assert stats["generations_created"] == 0


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_create_connection_refused_is_not_uncertain() -> None:
    """Connection refused (nothing sent) is retried and ends as APIConnectionError, not unknown."""
    async with make_client(f"http://127.0.0.1:{_dead_port()}") as c:
        with pytest.raises(APIConnectionError) as info:
            await c.submit(prompt="nobody home")
    assert not isinstance(info.value, CreateOutcomeUnknownError)
    assert info.value.request_sent is False


class _RefuseFirst(httpx.AsyncBaseTransport):
    """Raise ConnectError for the first ``n`` requests, then use the real transport."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left > 0:
            self.left -= 1
            raise httpx.ConnectError("connection refused (test)", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_create_reset_before_sending_is_retried_to_one_generation(
    emu: EmulatorServer,
) -> None:
    """A connect failure on create is retried (it provably sent nothing): one generation."""
    async with (
        httpx.AsyncClient(transport=_RefuseFirst(2)) as http,
        make_client(emu.base_url, http_client=http) as c,
    ):
        generation = await c.submit(prompt="refused then fine")
    stats = assert_ledger_accounted(emu, {generation.id}, set())
    assert stats["create_requests"] == 1
    assert stats["generations_created"] == 1


# ---------------------------------------------------------------------------- single: poll

#: poll faults and the typed error raised when every attempt fails.
POLL_ERRORS: dict[str, type[VeoError]] = {
    "server_error": ServerError,
    "bad_gateway": ServerError,
    "service_unavailable": ServerError,
    "gateway_timeout": ServerError,
    "connection_reset": APIConnectionError,
    "slow_response": APITimeoutError,
    "malformed_json": InvalidResponseError,
    "rate_limit": RateLimitError,
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind", [*sorted(POLL_ERRORS), "rate_limit_no_retry_after", "unknown_status"]
)
async def test_poll_fault_is_retried_to_success(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """A transient poll failure (or an unknown status) is retried; wait() still completes."""
    generation = await client.submit(prompt=f"poll {kind}")
    set_fault(emu, kind)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clear_after_first, emu, kind)
        done = await client.wait(generation, timeout=20)
    assert done.succeeded and done.video_url
    assert_ledger_accounted(emu, {generation.id}, set())


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind", [k for k in sorted(POLL_ERRORS) if k not in ("rate_limit", "slow_response")]
)
async def test_poll_fault_every_time_gives_typed_error(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """get() failing on every attempt raises the documented typed error after max_attempts."""
    generation = await client.submit(prompt=f"get {kind}")
    set_fault(emu, kind)
    with pytest.raises(POLL_ERRORS[kind]) as info:
        await client.get(generation.id)
    if isinstance(info.value, ServerError):
        assert info.value.status_code in (500, 502, 503, 504)
    stats = emu.stats(include_generations=False)
    # aiohttp (the fast transport on asyncio) itself retries an idempotent GET once when a
    # reused keep-alive connection drops; it never does so for a POST
    assert RETRY.max_attempts <= stats["poll_requests"] <= 2 * RETRY.max_attempts


@pytest.mark.anyio
async def test_poll_slower_than_timeout_is_typed_timeout(
    emu: EmulatorServer, emu_fast_client: AsyncVeoClient
) -> None:
    """A poll answer slower than the client timeout raises APITimeoutError (id kept)."""
    generation = await emu_fast_client.submit(prompt="slow poll")
    set_fault(emu, "slow_response")
    with pytest.raises(APITimeoutError):
        await emu_fast_client.get(generation.id)


@pytest.fixture
async def emu_fast_client(emu: EmulatorServer) -> AsyncIterator[AsyncVeoClient]:
    """A client with two attempts and a short read timeout (for slow-response cases)."""
    async with make_client(
        emu.base_url,
        retry=RetryConfig(max_attempts=2, initial_backoff=0.01, max_backoff=0.01),
        timeout=httpx.Timeout(0.3, connect=2.0),
    ) as c:
        yield c


@pytest.mark.anyio
async def test_unknown_status_never_crashes_and_waits_on(
    emu: EmulatorServer, client: AsyncVeoClient
) -> None:
    """Undocumented status strings are kept and treated as in progress (wait times out)."""
    generation = await client.submit(prompt="unknown status")
    set_fault(emu, "unknown_status")
    seen = await client.get(generation.id)
    assert seen.status.value in UNKNOWN_STATUSES and not seen.is_terminal
    with pytest.raises(WaitTimeoutError) as info:
        await client.wait(generation, timeout=0.3)
    assert info.value.generation_id == generation.id


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["job_error", "completed_without_url"])
async def test_failed_generation_is_an_error_not_a_success(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """A generation ending in error, or completed with no URL, raises GenerationFailedError."""
    set_fault(emu, kind)
    with pytest.raises(GenerationFailedError) as info:
        await client.generate(prompt=f"outcome {kind}", timeout=20)
    g = info.value.generation
    assert not g.succeeded and g.failed
    if kind == "completed_without_url":
        assert "without a video URL" in str(info.value)
        with pytest.raises(GenerationFailedError):
            await client.download(g, Path("never.mp4"))
    else:
        assert g.error_message
    assert_ledger_accounted(emu, {g.id}, set())


@pytest.mark.anyio
async def test_restart_makes_known_ids_not_found(
    emu: EmulatorServer, client: AsyncVeoClient
) -> None:
    """After the server forgets its jobs, polling a known id raises NotFoundError, once."""
    generation = await client.submit(prompt="forgotten")
    emu.restart()
    with pytest.raises(NotFoundError) as info:
        await client.wait(generation, timeout=5)
    assert info.value.status_code == 404
    assert emu.stats(include_generations=False)["poll_requests"] == 1


@pytest.mark.anyio
async def test_401_and_403_are_typed_and_never_retried(emu: EmulatorServer) -> None:
    """A wrong key gives AuthenticationError, an empty balance PermissionDeniedError; one try."""
    emu.configure(api_key="the-right-key")
    async with make_client(emu.base_url, api_key="a-wrong-key-value") as c:
        with pytest.raises(AuthenticationError) as auth:
            await c.submit(prompt="wrong key")
    assert "AIMLAPI_KEY" in str(auth.value) and "a-wrong-key-value" not in str(auth.value)
    emu.configure(api_key=None, credits=VEO2_COST - 1)
    async with make_client(emu.base_url) as c:
        with pytest.raises(PermissionDeniedError) as denied:
            await c.submit(prompt="no credits")
    assert "credits" in str(denied.value).lower()
    stats = assert_ledger_accounted(emu, set(), set())
    assert stats["create_requests"] == 2 and stats["generations_created"] == 0


# ---------------------------------------------------------------------------- single: download


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind",
    [
        "truncated_download",
        "server_error",
        "bad_gateway",
        "service_unavailable",
        "connection_reset",
    ],
)
async def test_download_fault_is_retried_to_a_whole_file(
    emu: EmulatorServer, client: AsyncVeoClient, tmp_path: Path, kind: str
) -> None:
    """A transient download failure is retried; the file is whole and nothing else is left."""
    done = await client.generate(prompt=f"download {kind}", timeout=20)
    set_fault(emu, kind)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clear_after_first, emu, kind)
        video = await client.download(done, tmp_path)
    assert video.path.read_bytes() == sample_video()
    assert sorted(p.name for p in tmp_path.iterdir()) == [video.path.name]


@pytest.mark.anyio
async def test_truncated_download_every_time_fails_and_leaves_nothing(
    emu: EmulatorServer, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """A download always cut short raises DownloadIntegrityError and leaves no file at all."""
    done = await client.generate(prompt="always truncated", timeout=20)
    set_fault(emu, "truncated_download")
    with pytest.raises(DownloadIntegrityError, match="truncated"):
        await client.download(done, tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_wrong_length_download_is_rejected(tmp_path: Path) -> None:
    """A body longer than its Content-Length is refused (DownloadIntegrityError), no file."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"video/mp4"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b"x" * 2000})

    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
        make_client("https://api.example.com", http_client=http) as c,
    ):
        with pytest.raises(DownloadIntegrityError):
            await c.download("https://cdn.example.com/v.mp4", tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- Retry-After date


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured() -> None:
    """A 429 with an HTTP-date Retry-After is waited out, then the create is retried once."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    calls: list[float] = []

    async def handler(request: Request) -> Response:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            when = datetime.now(timezone.utc) + timedelta(seconds=2)
            return JSONResponse(
                {"message": "slow down", "statusCode": 429},
                status_code=429,
                headers={"retry-after": format_datetime(when, usegmt=True)},
            )
        return JSONResponse({"id": "gen-1", "status": "queued"})

    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(routes=[Route("/v2/video/generations", handler, methods=["POST"])])
    retry = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
        make_client("https://api.example.com", http_client=http, retry=retry) as c,
    ):
        generation = await c.submit(prompt="dated")
    assert generation.id == "gen-1"
    assert len(calls) == 2
    # the date has one-second resolution: the wait is between 1 and 2 seconds
    assert 0.9 <= calls[1] - calls[0] <= 3.0


# ---------------------------------------------------------------------------- batches


def check_batch(
    emu: EmulatorServer,
    prompts: Sequence[str],
    results: Sequence[BatchResult],
    uncertain: Sequence[int],
    *,
    complete: bool = True,
    pending_ids: set[str] | None = None,
) -> dict[str, Any]:
    """Every input accounted exactly once; the ledger has no unreported duplicate or orphan."""
    indices = [r.index for r in results]
    assert len(indices) == len(set(indices))
    if complete:
        assert sorted(indices) == list(range(len(prompts)))
    for r in results:
        if r.ok:
            assert r.generation is not None and r.generation.video_url and r.generation_id
        else:
            assert isinstance(r.error, VeoError), r
    reported_unknown = {r.index for r in results if isinstance(r.error, CreateOutcomeUnknownError)}
    assert set(uncertain) >= reported_unknown
    ids = {r.generation_id for r in results if r.generation_id} | (pending_ids or set())
    return assert_ledger_accounted(emu, ids, {prompts[i] for i in uncertain})


async def run_batch(
    client: AsyncVeoClient, prompts: Sequence[str], **options: Any
) -> tuple[list[BatchResult], Any]:
    """Run a batch to the end (bounded in time); returns its results and the batch object."""
    options.setdefault("max_concurrency", 16)
    options.setdefault("job_timeout", 30)
    results: list[BatchResult] = []
    with anyio.fail_after(60):
        async with client.batch(list(prompts), **options) as batch:
            async for result in batch:
                results.append(result)
    return results, batch


BATCH_KINDS = [
    "rate_limit",
    "rate_limit_no_retry_after",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "gateway_timeout",
    "connection_reset",
    "malformed_json",
    "unknown_status",
    "job_error",
    "completed_without_url",
    "lost_create",
]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", BATCH_KINDS)
async def test_batch_with_one_fault_kind(
    emu: EmulatorServer, client: AsyncVeoClient, kind: str
) -> None:
    """A 40-job batch with one fault kind at 20%: all accounted, no duplicate, typed failures."""
    set_fault(emu, kind, 0.2)
    prompts = [f"{kind} {i}" for i in range(40)]
    results, batch = await run_batch(client, prompts)
    indices = [i for i, _ in batch.uncertain()]
    check_batch(emu, prompts, results, indices)
    errors = {type(r.error).__name__ for r in results if r.error}
    if kind in ("rate_limit", "rate_limit_no_retry_after", "service_unavailable", "unknown_status"):
        assert errors == set()  # retried: all succeed
    elif kind in ("job_error", "completed_without_url"):
        assert errors == {"GenerationFailedError"}
    if kind in (
        "server_error",
        "bad_gateway",
        "gateway_timeout",
        "connection_reset",
        "lost_create",
    ):
        # polls recover; only creates can end uncertain
        assert errors <= {"CreateOutcomeUnknownError"}
    assert batch.stop_reason is None
    assert batch.pending() == [] and batch.unsubmitted() == []


@pytest.mark.anyio
async def test_batch_slow_responses(emu: EmulatorServer, emu_fast_client: AsyncVeoClient) -> None:
    """Responses slower than the timeout: slow creates are reported uncertain, polls recover."""
    set_fault(emu, "slow_response", 0.1, slow_response_delay=0.6)
    prompts = [f"slow {i}" for i in range(30)]
    results, batch = await run_batch(emu_fast_client, prompts, max_poll_failures=10)
    check_batch(emu, prompts, results, [i for i, _ in batch.uncertain()])


@pytest.mark.anyio
async def test_batch_all_faults_mixed_at_20_percent(
    emu: EmulatorServer, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """300 jobs, every fault mixed at 20%: each input accounted, no duplicate, downloads ok."""
    emu.emulator.set_faults(
        FaultConfig.mixed(
            0.2,
            lost_create=0.01,
            job_error=0.02,
            completed_without_url=0.01,
            slow_response=0.005,
            slow_response_delay=SLOW,
        )
    )
    prompts = [f"mixed {i}" for i in range(300)]
    results, batch = await run_batch(client, prompts, max_concurrency=32, max_poll_failures=8)
    uncertain = [i for i, _ in batch.uncertain()]
    stats = check_batch(emu, prompts, results, uncertain)
    assert stats["faults_injected"]  # faults really happened
    ok = [r for r in results if r.ok]
    assert len(ok) > 200
    # download a few successes through the (faulty) CDN
    for r in ok[:5]:
        assert r.generation is not None
        video = await client.download(r.generation, tmp_path)
        assert video.size == len(sample_video())
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


@pytest.mark.anyio
async def test_batch_401_mid_batch_stops_with_clear_error(emu: EmulatorServer) -> None:
    """A key revoked mid-batch ends it with AuthenticationError; ids are kept in pending()."""
    emu.configure(api_key=KEY, max_concurrent=4)
    prompts = [f"auth {i}" for i in range(60)]
    results: list[BatchResult] = []
    async with make_client(emu.base_url) as c:
        batch = c.batch(prompts, max_concurrency=8, job_timeout=30)

        async def consume() -> None:
            async with batch:
                async for result in batch:
                    results.append(result)
                    if len(results) == 5:
                        emu.configure(api_key="rotated-key")

        with pytest.raises(AuthenticationError) as info:
            await consume()
    assert "AIMLAPI_KEY" in str(info.value)
    assert batch.stop_reason == "authentication"
    # every generation made is a result, a pending id (resumable) or an uncertain create
    pending_ids = {p.generation_id for p in batch.pending()}
    uncertain = [i for i, _ in batch.uncertain()]
    check_batch(emu, prompts, results, uncertain, complete=False, pending_ids=pending_ids)
    assert len(results) < len(prompts)


@pytest.mark.anyio
async def test_batch_403_out_of_credits_keeps_polling_what_exists(emu: EmulatorServer) -> None:
    """Out of credits mid-batch: submission stops, created jobs finish, the rest is unsubmitted."""
    emu.configure(credits=VEO2_COST * 10)
    prompts = [f"credits {i}" for i in range(30)]
    async with make_client(emu.base_url) as c:
        results, batch = await run_batch(c, prompts, max_concurrency=4)
    assert batch.stop_reason == "permission_denied"
    ok = [r for r in results if r.ok]
    denied = [r for r in results if isinstance(r.error, PermissionDeniedError)]
    assert len(ok) == 10
    assert denied and all("credits" in str(r.error).lower() for r in denied)
    unsubmitted = {i for i, _ in batch.unsubmitted()}
    assert {r.index for r in denied} <= unsubmitted
    stats = check_batch(emu, prompts, results, [], complete=False)
    assert stats["generations_created"] == 10
    assert stats["credits_charged"] == VEO2_COST * 10
    assert batch.pending() == []
    # every input is a result, or never read/submitted
    seen = {r.index for r in results} | unsubmitted
    assert seen | set(range(batch.counts.total_seen, len(prompts))) == set(range(len(prompts)))


@pytest.mark.anyio
async def test_batch_restart_mid_batch_reports_not_found(emu: EmulatorServer) -> None:
    """Server restart mid-batch: known ids fail with NotFoundError results; nothing resubmitted."""
    emu.configure(max_concurrent=4)
    prompts = [f"restart {i}" for i in range(24)]
    results: list[BatchResult] = []
    async with (
        make_client(emu.base_url) as c,
        c.batch(prompts, max_concurrency=8, job_timeout=30) as batch,
    ):
        async for result in batch:
            results.append(result)
            if len(results) == 6:
                emu.restart()
    lost = [r for r in results if isinstance(r.error, NotFoundError)]
    assert lost, "some jobs were live during the restart"
    assert all(r.generation_id for r in lost)
    check_batch(emu, prompts, results, [i for i, _ in batch.uncertain()])


# ---------------------------------------------------------------------------- cost guard


@pytest.mark.anyio
async def test_credit_budget_stops_submitting_and_reports_spend(emu: EmulatorServer) -> None:
    """A credit budget stops submission before it would be exceeded; ledger agrees on spend."""
    budget = VEO2_COST * 7 + VEO2_COST // 2
    prompts = [f"budget {i}" for i in range(30)]
    async with make_client(emu.base_url) as c:
        results, batch = await run_batch(c, prompts, credit_budget=budget, max_concurrency=4)
    stats = check_batch(emu, prompts, results, [], complete=False)
    assert batch.stop_reason == "credit_budget"
    assert stats["credits_charged"] <= budget
    assert stats["generations_created"] == 7
    assert batch.counts.credits_used == stats["credits_charged"]
    assert all(r.ok for r in results) and len(results) == 7


@pytest.mark.anyio
async def test_max_generations_stops_submitting_and_finishes_in_flight(
    emu: EmulatorServer,
) -> None:
    """max_generations caps creates; the jobs in flight still finish; the ledger agrees."""
    prompts = [f"cap {i}" for i in range(30)]
    async with make_client(emu.base_url) as c:
        results, batch = await run_batch(c, prompts, max_generations=9, max_concurrency=6)
    stats = check_batch(emu, prompts, results, [], complete=False)
    assert batch.stop_reason == "max_generations"
    assert stats["generations_created"] == 9
    assert len(results) == 9 and all(r.ok for r in results)
    assert stats["credits_charged"] == 9 * VEO2_COST == batch.counts.credits_used


@pytest.mark.anyio
async def test_credit_budget_with_estimate_under_faults(emu: EmulatorServer) -> None:
    """With an estimate and 20% mixed faults the guard still never lets spend pass the budget."""
    emu.emulator.set_faults(FaultConfig.mixed(0.2, lost_create=0.02))
    budget = VEO2_COST * 12
    prompts = [f"guard {i}" for i in range(40)]
    async with make_client(emu.base_url) as c:
        results, batch = await run_batch(
            c,
            prompts,
            credit_budget=budget,
            estimated_credits_per_job=VEO2_COST,
            max_concurrency=8,
        )
    uncertain = [i for i, _ in batch.uncertain()]
    stats = check_batch(emu, prompts, results, uncertain, complete=False)
    assert batch.stop_reason == "credit_budget"
    assert stats["credits_charged"] <= budget


@pytest.mark.anyio
async def test_random_429s_do_not_collapse_the_default_governor(emu: EmulatorServer) -> None:
    """A 429 before the first success must not throttle a 40-job batch to ~1 request/s."""
    set_fault(emu, "rate_limit_no_retry_after", 1.0)
    prompts = [f"collapse {i}" for i in range(40)]
    async with make_client(emu.base_url) as c:

        async def then_twenty_percent() -> None:
            await clear_after_first(emu, "rate_limit_no_retry_after")
            set_fault(emu, "rate_limit_no_retry_after", 0.2)

        # ~1.5 s when the rate is kept (more on trio under load); a collapse takes minutes
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(then_twenty_percent)
                async with c.batch(prompts, max_concurrency=16, create_grace=0.5) as batch:
                    async for _ in batch:
                        pass
