"""AsyncVeoClient against respx: every method, status and error mapping, and retry path."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from veo_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncVeoClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CreateOutcomeUnknownError,
    DownloadError,
    DownloadIntegrityError,
    GenerationFailedError,
    GenerationStatus,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PollPolicy,
    RateLimitError,
    RequestValidationError,
    RetryConfig,
    ServerError,
    Veo2TextToVideo,
    WaitTimeoutError,
)
from veo_async._timing import set_no_waiting

pytestmark = pytest.mark.anyio

KEY = "sk-test-THIS-IS-THE-SECRET-KEY"
BASE = "https://api.test"
UNIVERSAL = f"{BASE}/v2/video/generations"
GOOGLE = f"{BASE}/v2/generate/video/google/generation"
CDN = "https://cdn.test/generations/abc.mp4"


def gen(status: str = "queued", gid: str = "gen-1", **extra: Any) -> dict[str, Any]:
    """A generation body as the API sends it."""
    body: dict[str, Any] = {"id": gid, "status": status, "video": None, "error": None}
    body.update(extra)
    return body


def done(gid: str = "gen-1") -> dict[str, Any]:
    """A completed generation body."""
    return gen("completed", gid, video={"url": CDN}, meta={"usage": {"credits_used": 120000}})


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    previous = set_no_waiting(True)
    yield
    set_no_waiting(previous)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[AsyncVeoClient]:
    async with AsyncVeoClient(KEY, base_url=BASE, fast_transport=False) as c:
        yield c


# ---------------------------------------------------------------- configuration


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIMLAPI_KEY is used when no api_key is passed."""
    monkeypatch.setenv("AIMLAPI_KEY", KEY)
    client = AsyncVeoClient(base_url=BASE)
    assert client._auth_headers()["Authorization"] == f"Bearer {KEY}"


def test_missing_key_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: a ConfigurationError naming AIMLAPI_KEY and the emulator."""
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="AIMLAPI_KEY") as info:
        AsyncVeoClient()
    assert "emulat" in str(info.value)


def test_key_with_newline_is_rejected_without_echo() -> None:
    """A key with a stray newline is refused, and the message does not contain the key."""
    with pytest.raises(ConfigurationError) as info:
        AsyncVeoClient("abc def-SECRETPART")
    assert "SECRETPART" not in str(info.value)


def test_plain_http_to_remote_host_refused() -> None:
    """http:// to a non-loopback host is refused unless explicitly allowed."""
    with pytest.raises(ConfigurationError, match="plain HTTP"):
        AsyncVeoClient(KEY, base_url="http://api.aimlapi.com")
    AsyncVeoClient(KEY, base_url="http://api.aimlapi.com", allow_insecure_http=True)
    AsyncVeoClient(KEY, base_url="http://127.0.0.1:8765")
    AsyncVeoClient(KEY, base_url="http://localhost:8765")
    AsyncVeoClient(KEY, base_url="http://[::1]:8765")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIMLAPI_BASE_URL sets the base URL."""
    monkeypatch.setenv("AIMLAPI_BASE_URL", "http://127.0.0.1:9999/")
    assert str(AsyncVeoClient(KEY).base_url) == "http://127.0.0.1:9999"


def test_bad_endpoint_rejected() -> None:
    """An unknown endpoint style is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="endpoint"):
        AsyncVeoClient(KEY, endpoint="other")  # type: ignore[arg-type]


def test_repr_hides_key() -> None:
    """repr(client) never shows the key."""
    text = repr(AsyncVeoClient(KEY, base_url=BASE))
    assert KEY not in text
    assert "*****" in text


# ---------------------------------------------------------------- submit / get


async def test_submit_sends_body_to_universal_path(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """submit(prompt=...) POSTs the validated body with the bearer key; returns a Generation."""
    route = mock.post(UNIVERSAL).respond(200, json=gen())
    g = await client.submit(prompt="a fox", duration=6, aspect_ratio="9:16")
    assert g.id == "gen-1"
    assert g.status is GenerationStatus.QUEUED
    request = route.calls.last.request
    assert json.loads(request.content) == {
        "model": "veo2",
        "prompt": "a fox",
        "duration": 6,
        "aspect_ratio": "9:16",
    }
    assert request.headers["Authorization"] == f"Bearer {KEY}"


async def test_submit_google_endpoint_and_201(mock: respx.MockRouter) -> None:
    """endpoint='google' uses the vendor path; a 201 is success too."""
    route = mock.post(GOOGLE).respond(201, json=gen())
    poll = mock.get(GOOGLE, params={"generation_id": "gen-1"}).respond(200, json=done())
    async with AsyncVeoClient(KEY, base_url=BASE, endpoint="google", fast_transport=False) as c:
        await c.submit(Veo2TextToVideo(prompt="x"))
        assert (await c.get("gen-1")).succeeded
    assert route.called and poll.called


async def test_submit_extra_body_escape_hatch(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """extra_body fields are sent as-is, for fields the SDK does not know yet."""
    route = mock.post(UNIVERSAL).respond(200, json=gen())
    await client.submit(prompt="x", extra_body={"brand_new": True})
    assert json.loads(route.calls.last.request.content)["brand_new"] is True


async def test_invalid_request_sends_nothing(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """A duration of 9 for veo2 raises before any request is sent."""
    route = mock.post(UNIVERSAL).respond(200, json=gen())
    with pytest.raises(RequestValidationError, match="duration") as info:
        await client.submit(prompt="x", duration=9)
    assert info.value.errors[0]["allowed"] == [5, 6, 7, 8]
    assert not route.called


async def test_get_polls_with_generation_id(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """get(id) GETs the same path with ?generation_id=."""
    route = mock.get(UNIVERSAL, params={"generation_id": "gen-1"}).respond(200, json=done())
    g = await client.get("gen-1")
    assert g.video_url == CDN and g.credits_used == 120000
    assert route.called


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
    ],
)
async def test_status_errors_are_typed_with_request_id(
    mock: respx.MockRouter, client: AsyncVeoClient, status: int, exc: type[Exception]
) -> None:
    """4xx statuses map to their exception, carrying status code, request id and message."""
    body = {
        "message": "Body validation error",
        "path": "/v2/video/generations",
        "requestId": "req-42",
        "statusCode": str(status),
        "errors": [{"path": ["duration"], "expected": "5 | 6 | 7 | 8", "received": "9"}],
    }
    route = mock.get(UNIVERSAL).respond(status, json=body)
    with pytest.raises(exc) as info:
        await client.get("gen-1")
    err = info.value
    assert getattr(err, "status_code", None) == status
    assert getattr(err, "request_id", None) == "req-42"
    assert "req-42" in str(err)
    assert KEY not in str(err)
    assert route.call_count == 1  # 4xx are not retried
    if isinstance(err, BadRequestError):
        assert err.details == {"errors": body["errors"]}


async def test_poll_retries_5xx_then_succeeds(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """A poll is retried after 500/502/503/504 and a broken body."""
    route = mock.get(UNIVERSAL).mock(
        side_effect=[
            httpx.Response(500, json={"message": "boom"}),
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(503),
            httpx.Response(504, json={"message": "Generation timeout"}),
            httpx.Response(200, text="{not json"),
            httpx.Response(200, json=done()),
        ]
    )
    assert (await client.get("gen-1")).succeeded
    assert route.call_count == 6


async def test_poll_gives_up_with_last_error(mock: respx.MockRouter) -> None:
    """After max_attempts the last error is let through unchanged."""
    mock.get(UNIVERSAL).respond(502, json={"message": "upstream"})
    async with AsyncVeoClient(
        KEY, base_url=BASE, retry=RetryConfig(max_attempts=3), fast_transport=False
    ) as c:
        with pytest.raises(ServerError, match="upstream"):
            await c.get("gen-1")


async def test_poll_retries_connection_errors(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """Read errors and timeouts on a poll are retried."""
    route = mock.get(UNIVERSAL).mock(
        side_effect=[
            httpx.ReadError("reset"),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=done()),
        ]
    )
    assert (await client.get("gen-1")).succeeded
    assert route.call_count == 3


async def test_429_honours_retry_after(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """A 429 is retried after its Retry-After; the governor records the wait (a lone 429:
    the refused request's own, no pipeline pause)."""
    route = mock.get(UNIVERSAL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
            httpx.Response(200, json=done()),
        ]
    )
    assert (await client.get("gen-1")).succeeded
    assert route.call_count == 2
    assert client.governor.rate_limited == 1
    assert client.governor.own_wait_seconds == pytest.approx(7, abs=0.5)
    assert client.governor.paused_seconds == 0.0


async def test_429_without_retry_after_uses_backoff(mock: respx.MockRouter) -> None:
    """When 429s persist past the limit, RateLimitError (with retry_after) is raised."""
    mock.post(UNIVERSAL).respond(429, json={"message": "limit"})
    async with AsyncVeoClient(
        KEY, base_url=BASE, retry=RetryConfig(max_attempts=1), fast_transport=False
    ) as c:
        with pytest.raises(RateLimitError) as info:
            await c.submit(prompt="x")
    assert info.value.retry_after is None


# ---------------------------------------------------------------- money safety


async def test_create_connect_error_is_retried(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """A create that never connected is safe to retry: it is, and succeeds."""
    route = mock.post(UNIVERSAL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=gen())]
    )
    assert (await client.submit(prompt="x")).id == "gen-1"
    assert route.call_count == 2


async def test_create_429_and_503_are_retried(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """429 and 503 on a create mean the work was refused: retried."""
    route = mock.post(UNIVERSAL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(503),
            httpx.Response(200, json=gen()),
        ]
    )
    assert (await client.submit(prompt="x")).id == "gen-1"
    assert route.call_count == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.Response(500, json={"message": "internal"}),
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.Response(504, json={"message": "Generation timeout"}),
        httpx.Response(200, text="{broken"),
    ],
    ids=["read-timeout", "disconnect", "reset", "500", "502", "504", "broken-body"],
)
async def test_create_with_unknown_outcome_is_not_retried(
    mock: respx.MockRouter, client: AsyncVeoClient, failure: Exception | httpx.Response
) -> None:
    """A create that may have reached the server raises CreateOutcomeUnknownError, sent once."""
    route = mock.post(UNIVERSAL).mock(side_effect=[failure, httpx.Response(200, json=gen())])
    with pytest.raises(CreateOutcomeUnknownError) as info:
        await client.submit(prompt="a unique prompt")
    assert route.call_count == 1
    assert info.value.request is not None
    assert info.value.request.prompt == "a unique prompt"
    assert info.value.__cause__ is not None


def test_aiohttp_disconnect_is_not_mistaken_for_connect_error() -> None:
    """httpx-aiohttp maps ServerDisconnectedError to ConnectTimeout: still counted as sent."""
    aiohttp = pytest.importorskip("aiohttp")
    from veo_async._boundary import _request_not_sent

    sent = httpx.ConnectTimeout("disconnected")
    sent.__cause__ = aiohttp.ServerDisconnectedError()
    assert not _request_not_sent(sent)
    not_sent = httpx.ConnectError("refused")
    not_sent.__cause__ = aiohttp.ClientConnectorError(
        connection_key=None, os_error=OSError(111, "refused")
    )
    assert _request_not_sent(not_sent)
    assert _request_not_sent(httpx.ConnectError("plain httpx"))
    assert not _request_not_sent(httpx.ReadTimeout("x"))


async def test_connection_error_types(mock: respx.MockRouter) -> None:
    """Exhausted connection failures surface as APIConnectionError / APITimeoutError."""
    mock.get(UNIVERSAL).mock(side_effect=httpx.ConnectTimeout("nope"))
    async with AsyncVeoClient(
        KEY, base_url=BASE, retry=RetryConfig(max_attempts=2), fast_transport=False
    ) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.get("gen-1")
        assert info.value.request_sent is False
        mock.get(UNIVERSAL).mock(side_effect=httpx.ReadError("reset"))
        with pytest.raises(APIConnectionError):
            await c.get("gen-1")


async def test_redirect_is_not_followed(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """API redirects are not followed, so the key cannot travel to another host."""
    mock.get(UNIVERSAL).respond(302, headers={"Location": "https://evil.test/steal"})
    evil = mock.get("https://evil.test/steal").respond(200, json=done())
    with pytest.raises(Exception, match="redirect"):
        await client.get("gen-1")
    assert not evil.called


# ---------------------------------------------------------------- wait / generate


async def test_wait_until_completed(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """wait() polls through in-progress and unknown statuses to completion."""
    seen: list[str] = []
    mock.get(UNIVERSAL).mock(
        side_effect=[
            httpx.Response(200, json=gen("queued")),
            httpx.Response(200, json=gen("generating")),
            httpx.Response(200, json=gen("rendering-new-status")),
            httpx.Response(200, json=gen("waiting")),
            httpx.Response(200, json=done()),
        ]
    )
    g = await client.wait("gen-1", on_update=lambda g: seen.append(str(g.status)))
    assert g.succeeded
    assert seen == ["queued", "generating", "rendering-new-status", "waiting", "completed"]


async def test_wait_failure_raises_with_generation(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """A generation ending in error raises GenerationFailedError with its reason."""
    mock.get(UNIVERSAL).respond(
        200, json=gen("error", error={"name": "ContentPolicy", "message": "blocked"})
    )
    with pytest.raises(GenerationFailedError, match="blocked") as info:
        await client.wait("gen-1")
    assert info.value.generation_id == "gen-1"


async def test_completed_without_url_is_a_failure(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """completed with no video URL is an error, not a success."""
    mock.get(UNIVERSAL).respond(200, json=gen("completed"))
    with pytest.raises(GenerationFailedError, match="without a video URL"):
        await client.wait("gen-1")
    g = await client.wait("gen-1", raise_on_failure=False)
    assert g.failed and not g.succeeded


async def test_wait_timeout_carries_id(mock: respx.MockRouter) -> None:
    """wait() that runs out of time raises WaitTimeoutError carrying the id."""
    mock.get(UNIVERSAL).respond(200, json=gen("generating"))
    set_no_waiting(False)  # real (tiny) waits so the deadline can pass
    async with AsyncVeoClient(KEY, base_url=BASE, fast_transport=False) as c:
        with pytest.raises(WaitTimeoutError) as info:
            await c.wait(
                "gen-1",
                timeout=0.05,
                expected_seconds=0.01,
                poll_policy=PollPolicy(min_interval=0.001, interval=0.005),
            )
    assert info.value.generation_id == "gen-1"
    assert info.value.last is not None


async def test_generate_is_submit_plus_wait(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """generate() submits then waits, returning the completed generation."""
    mock.post(UNIVERSAL).respond(200, json=gen())
    mock.get(UNIVERSAL).respond(200, json=done())
    g = await client.generate(prompt="x", model="google/veo-3.1-t2v", resolution="720p")
    assert g.succeeded


async def test_async_on_update_is_awaited(mock: respx.MockRouter, client: AsyncVeoClient) -> None:
    """An async on_update callback is awaited."""
    mock.get(UNIVERSAL).respond(200, json=done())
    seen: list[str] = []

    async def update(g: Any) -> None:
        seen.append(g.id)

    await client.wait("gen-1", on_update=update)
    assert seen == ["gen-1"]


# ---------------------------------------------------------------- downloads


MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 1000


async def test_download_streams_without_key(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """download() writes the file atomically, returns its SHA-256, and sends no key to the CDN."""
    route = mock.get(CDN).respond(
        200, content=MP4, headers={"Content-Type": "video/mp4", "Content-Length": str(len(MP4))}
    )
    result = await client.download(CDN, tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == MP4
    assert result.sha256 == hashlib.sha256(MP4).hexdigest()
    assert result.size == len(MP4)
    assert "authorization" not in route.calls.last.request.headers
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


async def test_download_never_uses_client_default_auth(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    """Even a user http_client with a default Authorization header sends none to the CDN."""
    route = mock.get(CDN).respond(200, content=MP4, headers={"Content-Type": "video/mp4"})
    async with httpx.AsyncClient(headers={"Authorization": "Bearer leaked"}) as http:
        c = AsyncVeoClient(KEY, base_url=BASE, http_client=http)
        await c.download(CDN, tmp_path / "v.mp4")
    assert "authorization" not in route.calls.last.request.headers


async def test_download_into_folder_names_file_by_id(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """Downloading a Generation into a folder names the file after its id, safely."""
    from veo_async import Generation

    g = Generation.model_validate(done("../../etc/passwd"))
    mock.get(CDN).respond(200, content=MP4, headers={"Content-Type": "video/mp4"})
    result = await client.download(g, tmp_path)
    assert result.path.parent == tmp_path
    assert result.path.name == "etc-passwd.mp4"


async def test_truncated_download_fails_and_leaves_nothing(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    """A body shorter than Content-Length is retried, then fails with no partial file left."""
    mock.get(CDN).mock(
        side_effect=lambda request: httpx.Response(
            200, content=MP4[:100], headers={"Content-Type": "video/mp4", "Content-Length": "5000"}
        )
    )
    async with AsyncVeoClient(
        KEY, base_url=BASE, retry=RetryConfig(max_attempts=2), fast_transport=False
    ) as c:
        with pytest.raises(DownloadIntegrityError, match="truncated"):
            await c.download(CDN, tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_truncation_then_success(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """A truncated download is retried and the retry succeeds."""
    ok = {"Content-Type": "video/mp4", "Content-Length": str(len(MP4))}
    mock.get(CDN).mock(
        side_effect=[
            httpx.Response(200, content=MP4[:10], headers={**ok}),
            httpx.Response(200, content=MP4, headers=ok),
        ]
    )
    result = await client.download(CDN, tmp_path / "v.mp4")
    assert result.size == len(MP4)


async def test_download_refuses_to_overwrite(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """An existing file is kept unless overwrite=True."""
    target = tmp_path / "v.mp4"
    target.write_bytes(b"precious")
    mock.get(CDN).respond(200, content=MP4, headers={"Content-Type": "video/mp4"})
    with pytest.raises(FileExistsError):
        await client.download(CDN, target)
    assert target.read_bytes() == b"precious"
    await client.download(CDN, target, overwrite=True)
    assert target.read_bytes() == MP4


async def test_download_checks_type_and_size(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """An HTML page is not saved as a video; a body over the cap is refused."""
    mock.get(CDN).respond(200, text="<html>login</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(DownloadIntegrityError, match="content-type"):
        await client.download(CDN, tmp_path / "a.mp4")
    mock.get(CDN).respond(200, content=MP4, headers={"Content-Type": "video/mp4"})
    with pytest.raises(DownloadIntegrityError, match="cap"):
        await client.download(CDN, tmp_path / "b.mp4", max_bytes=100)
    assert list(tmp_path.iterdir()) == []


async def test_download_404_and_bad_url(
    mock: respx.MockRouter, client: AsyncVeoClient, tmp_path: Path
) -> None:
    """A 404 from the CDN and a non-http URL raise DownloadError."""
    mock.get(CDN).respond(404)
    with pytest.raises(DownloadError, match="404"):
        await client.download(CDN, tmp_path / "a.mp4")
    with pytest.raises(DownloadError, match="not an http"):
        await client.download("file:///etc/passwd", tmp_path / "b.mp4")


async def test_generation_without_video_cannot_be_downloaded(
    client: AsyncVeoClient, tmp_path: Path
) -> None:
    """download(generation) with no video URL raises GenerationFailedError."""
    from veo_async import Generation

    with pytest.raises(GenerationFailedError):
        await client.download(Generation.model_validate(gen("queued")), tmp_path)


# ---------------------------------------------------------------- secrecy


async def test_key_never_logged(
    mock: respx.MockRouter, client: AsyncVeoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logs of requests, retries and errors never contain the key."""
    caplog.set_level(logging.DEBUG)
    mock.post(UNIVERSAL).mock(
        side_effect=[httpx.ConnectError("x"), httpx.Response(200, json=gen())]
    )
    mock.get(UNIVERSAL).respond(401, json={"message": "Invalid key"})
    await client.submit(prompt="x")
    with pytest.raises(AuthenticationError) as info:
        await client.get("gen-1")
    assert caplog.records
    assert KEY not in caplog.text
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_invalid_response_error_on_non_generation(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """A 2xx that is JSON but not a generation is retried and then InvalidResponseError."""
    mock.get(UNIVERSAL).respond(200, json={"unexpected": True})
    with pytest.raises(InvalidResponseError):
        await client.get("gen-1")


async def test_closed_client_refuses_requests() -> None:
    """Using a client after close gives a clear error."""
    c = AsyncVeoClient(KEY, base_url=BASE, fast_transport=False)
    await c.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await c.get("gen-1")


@pytest.mark.parametrize(
    ("endpoint", "model", "fields", "schema_file"),
    [
        ("google", "veo2", {"duration": 8, "aspect_ratio": "16:9"}, "veo2-text-to-video.json"),
        ("universal", "veo2", {"seed": 3, "enhance_prompt": False}, "veo2.json"),
        (
            "universal",
            "veo2/image-to-video",
            {"image_url": "https://e.test/a.png", "duration": 6},
            "Veo2-Image-to-Video.json",
        ),
        (
            "universal",
            "google/veo-3.1-t2v",
            {"resolution": "1080p", "generate_audio": False, "duration": 4},
            "veo-3.1-t2v.json",
        ),
    ],
)
async def test_sent_body_matches_provider_schema(
    mock: respx.MockRouter, endpoint: str, model: str, fields: dict[str, Any], schema_file: str
) -> None:
    """The body actually sent on the wire validates against the provider's schema for its path."""
    import jsonschema

    doc = json.loads((Path(__file__).parent / "schemas" / schema_file).read_text())
    ((path, ops),) = doc["paths"].items()
    schema = ops["post"]["requestBody"]["content"]["application/json"]["schema"]
    route = mock.post(f"{BASE}{path}").respond(200, json=gen())
    async with AsyncVeoClient(
        KEY,
        base_url=BASE,
        endpoint=endpoint,  # type: ignore[arg-type]
        fast_transport=False,
    ) as c:
        await c.submit(prompt="A lighthouse in a storm", model=model, **fields)
    jsonschema.validate(json.loads(route.calls.last.request.content), schema)


async def test_time_scale_scales_computed_backoff_not_retry_after(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With time_scale, computed backoffs shrink by the scale; a server's Retry-After does not."""
    from veo_async import _timing

    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_timing, "sleep", fake_sleep)
    mock.get(UNIVERSAL).mock(
        side_effect=[
            httpx.Response(502),
            httpx.Response(429, headers={"Retry-After": "0.25"}),
            httpx.Response(200, json=done()),
        ]
    )
    retry = RetryConfig(initial_backoff=10.0, max_backoff=10.0)
    async with AsyncVeoClient(
        KEY, base_url=BASE, time_scale=0.01, retry=retry, fast_transport=False
    ) as c:
        assert (await c.get("gen-1")).succeeded
        assert c.governor.own_wait_seconds == pytest.approx(0.25, abs=0.05)
    assert len(slept) >= 1
    assert 0.05 <= slept[0] <= 0.1  # 5-10 s of backoff, at 1/100 time


def test_time_scale_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """VEO_ASYNC_TIME_SCALE sets the scale; garbage or zero is a ConfigurationError."""
    monkeypatch.setenv("VEO_ASYNC_TIME_SCALE", "0.02")
    assert AsyncVeoClient(KEY, base_url=BASE).poll_policy.time_scale == 0.02
    monkeypatch.setenv("VEO_ASYNC_TIME_SCALE", "fast")
    with pytest.raises(ConfigurationError, match="VEO_ASYNC_TIME_SCALE"):
        AsyncVeoClient(KEY, base_url=BASE)
    monkeypatch.delenv("VEO_ASYNC_TIME_SCALE")
    with pytest.raises(ConfigurationError, match="time_scale"):
        AsyncVeoClient(KEY, base_url=BASE, time_scale=0)


async def test_empty_generation_id_is_a_typed_error(
    mock: respx.MockRouter, client: AsyncVeoClient
) -> None:
    """get('') / wait('  ') raise RequestValidationError (a ValueError) and send nothing."""
    route = mock.get(UNIVERSAL).respond(200, json=done())
    with pytest.raises(RequestValidationError, match="generation id"):
        await client.get("")
    with pytest.raises(ValueError, match="generation id"):
        await client.wait("   ")
    assert not route.called


def test_boundary_limits_are_validated() -> None:
    """request_deadline and max_response_bytes must be positive (None disables the deadline)."""
    with pytest.raises(ConfigurationError, match="request_deadline"):
        AsyncVeoClient(KEY, base_url=BASE, request_deadline=0)
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        AsyncVeoClient(KEY, base_url=BASE, max_response_bytes=0)
    client = AsyncVeoClient(KEY, base_url=BASE, request_deadline=None)
    assert client.request_deadline is None
    assert client.max_response_bytes == 1024 * 1024
