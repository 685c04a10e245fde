"""Security properties, checked end to end (real emulator server, or a tiny ASGI app).

* HTTPS is required for a non-loopback base URL unless explicitly allowed.
* The Authorization header goes to the API host only: never to the video host, never across
  a redirect to another host.
* Downloads: size cap, content-type check, safe file names, atomic writes, no overwrite.
* The API key is redacted everywhere: repr, config dumps, DEBUG logs (the SDK's and httpx's),
  error messages and reprs, and full tracebacks including local variables.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from veo_async import (
    APIStatusError,
    AsyncVeoClient,
    ConfigurationError,
    DownloadIntegrityError,
    Generation,
    PollPolicy,
    RetryConfig,
    VeoError,
)
from veo_async.emulator import EmulatorConfig, EmulatorServer, FaultConfig, sample_video

SCALE = 0.01
KEY = "sk-SECRET-d41d8cd98f00b204e9800998ecf8427e"
RETRY = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_retry_after=0.02)


def make_client(base_url: str, **options: Any) -> AsyncVeoClient:
    """A client for the time-compressed emulator."""
    opts: dict[str, Any] = {
        "base_url": base_url,
        "retry": RETRY,
        "timeout": httpx.Timeout(1.0, connect=2.0),
        "poll_policy": PollPolicy(time_scale=SCALE),
    }
    opts.update(options)
    return AsyncVeoClient(opts.pop("api_key", KEY), **opts)


# ---------------------------------------------------------------------------- HTTPS


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://api.aimlapi.com", False),
        ("http://10.0.0.5:8080", False),
        ("http://example.localhost.evil.com", False),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:8765", True),
        ("http://[::1]:8765", True),
        ("http://emulator.localhost", True),
        ("https://api.aimlapi.com", True),
    ],
)
def test_https_required_for_non_loopback(url: str, allowed: bool) -> None:
    """Plain HTTP is refused for non-loopback hosts (without echoing the key)."""
    if allowed:
        AsyncVeoClient(KEY, base_url=url)
        return
    with pytest.raises(ConfigurationError) as info:
        AsyncVeoClient(KEY, base_url=url)
    assert "allow_insecure_http" in str(info.value)
    assert KEY not in str(info.value)
    AsyncVeoClient(KEY, base_url=url, allow_insecure_http=True)  # explicit opt-in works


@pytest.mark.parametrize("url", ["ftp://api.aimlapi.com", "file:///etc/passwd", "api.aimlapi.com"])
def test_non_http_base_urls_refused(url: str) -> None:
    """Only http(s) URLs with a host are accepted as base URL."""
    with pytest.raises(ConfigurationError):
        AsyncVeoClient(KEY, base_url=url)


# ---------------------------------------------------------------------------- key routing


@pytest.fixture(scope="module")
def cdn_split_server() -> Iterator[EmulatorServer]:
    """API on 127.0.0.1, video URLs on localhost: a different host for the same server."""
    with EmulatorServer(EmulatorConfig(time_scale=SCALE), cdn_host="localhost") as srv:
        yield srv


@pytest.mark.anyio
async def test_key_never_sent_to_video_host(
    cdn_split_server: EmulatorServer, tmp_path: Path
) -> None:
    """Downloads from the video host carry no Authorization (even with faults and retries)."""
    srv = cdn_split_server
    srv.reset()
    srv.emulator.set_faults(FaultConfig(truncated_download=0.3, server_error=0.1))
    async with make_client(
        srv.base_url, retry=RetryConfig(max_attempts=8, initial_backoff=0.01, max_backoff=0.02)
    ) as c:
        for i in range(3):
            done = await c.generate(prompt=f"split host {i}", timeout=20)
            assert done.video_url and httpx.URL(done.video_url).host == "localhost"
            await c.download(done, tmp_path)
    stats = srv.stats(include_generations=False)
    assert stats["download_requests"] >= 3
    assert stats["cdn_requests_with_authorization"] == 0


@pytest.mark.anyio
async def test_key_not_sent_to_video_host_even_with_default_auth_header(
    cdn_split_server: EmulatorServer, tmp_path: Path
) -> None:
    """A user http_client with a default Authorization header still downloads without it."""
    srv = cdn_split_server
    srv.reset()
    srv.emulator.set_faults(FaultConfig())
    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http,
        make_client(srv.base_url, http_client=http) as c,
    ):
        done = await c.generate(prompt="default header", timeout=20)
        await c.download(done, tmp_path / "v.mp4")
    assert srv.stats(include_generations=False)["cdn_requests_with_authorization"] == 0


class _Hosts(httpx.AsyncBaseTransport):
    """Routes by host: the API answers 302 to another host; records what each host saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "api.example.com":
            return httpx.Response(302, headers={"location": "https://evil.example.net/steal"})
        if request.url.host == "cdn.example.com":
            return httpx.Response(302, headers={"location": "https://evil.example.net/v.mp4"})
        return httpx.Response(200, content=sample_video(), headers={"content-type": "video/mp4"})


@pytest.mark.anyio
async def test_api_redirect_to_another_host_is_not_followed() -> None:
    """A 302 from the API is an error; the other host never gets a request (nor the key)."""
    hosts = _Hosts()
    async with (
        httpx.AsyncClient(transport=hosts) as http,
        make_client("https://api.example.com", http_client=http) as c,
    ):
        with pytest.raises(APIStatusError) as info:
            await c.get("gen-1")
        with pytest.raises(APIStatusError) as create:
            await c.submit(prompt="redirected")  # a 3xx on create is an error, not retried
    assert info.value.status_code == create.value.status_code == 302
    assert "evil.example.net" in str(info.value)
    assert [h for h, _ in hosts.seen] == ["api.example.com", "api.example.com"]


@pytest.mark.anyio
async def test_download_redirect_to_another_host_never_carries_the_key(tmp_path: Path) -> None:
    """A CDN redirect may be followed, but no hop carries Authorization (even as a default)."""
    hosts = _Hosts()
    async with (
        httpx.AsyncClient(transport=hosts, headers={"Authorization": f"Bearer {KEY}"}) as http,
        make_client("https://api.example.com", http_client=http) as c,
    ):
        await c.download("https://cdn.example.com/v.mp4", tmp_path / "v.mp4")
    assert [h for h, _ in hosts.seen] == ["cdn.example.com", "evil.example.net"]
    assert all(auth is None for _, auth in hosts.seen)


# ---------------------------------------------------------------------------- downloads


def _cdn(content: bytes, ctype: str = "video/mp4", **headers: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"content-type": ctype, **headers})

    return httpx.MockTransport(handler)


async def _download(transport: httpx.AsyncBaseTransport, target: Path, **kw: Any) -> Any:
    async with (
        httpx.AsyncClient(transport=transport) as http,
        make_client("https://api.example.com", http_client=http, **kw) as c,
    ):
        return await c.download("https://cdn.example.com/x.mp4", target)


@pytest.mark.anyio
async def test_download_size_cap(tmp_path: Path) -> None:
    """A video over max_download_bytes is refused and leaves no file."""
    with pytest.raises(DownloadIntegrityError, match="cap"):
        await _download(_cdn(b"v" * 5000), tmp_path / "v.mp4", max_download_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_download_size_cap_without_content_length(tmp_path: Path) -> None:
    """The cap also holds for a streamed body with no Content-Length."""

    async def chunks() -> Any:
        for _ in range(10):
            yield b"v" * 500

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(), headers={"content-type": "video/mp4"})

    with pytest.raises(DownloadIntegrityError, match="cap"):
        await _download(httpx.MockTransport(handler), tmp_path / "v.mp4", max_download_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.parametrize("ctype", ["text/html", "application/json", "image/png"])
async def test_download_content_type_checked(tmp_path: Path, ctype: str) -> None:
    """An HTML/JSON error page served as the video is refused; no file is written."""
    with pytest.raises(DownloadIntegrityError, match="content-type"):
        await _download(_cdn(b"<html>oops</html>", ctype), tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "gid", ["../../etc/passwd", "..", ".hidden", "a/b\\c", "x\x00y", "CON:", "é" * 200, ""]
)
async def test_download_file_names_are_safe(tmp_path: Path, gid: str) -> None:
    """A hostile generation id can never place the file outside the target folder."""
    generation = Generation.model_validate(
        {
            "id": gid or "   ",
            "status": "completed",
            "video": {"url": "https://cdn.example.com/x.mp4"},
        }
    )
    folder = tmp_path / "out"
    folder.mkdir()
    async with (
        httpx.AsyncClient(transport=_cdn(sample_video())) as http,
        make_client("https://api.example.com", http_client=http) as c,
    ):
        video = await c.download(generation, folder)
    assert video.path.parent == folder
    assert not video.path.name.startswith(".")
    assert video.path.name.endswith(".mp4") and len(video.path.name) <= 84
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in video.path.name)


@pytest.mark.anyio
async def test_existing_file_never_overwritten_unless_asked(tmp_path: Path) -> None:
    """An existing file is kept (FileExistsError); overwrite=True replaces it atomically."""
    target = tmp_path / "v.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        await _download(_cdn(sample_video()), target)
    assert target.read_bytes() == b"precious"
    async with (
        httpx.AsyncClient(transport=_cdn(sample_video())) as http,
        make_client("https://api.example.com", http_client=http) as c,
    ):
        video = await c.download("https://cdn.example.com/x.mp4", target, overwrite=True)
    assert target.read_bytes() == sample_video() and video.size == len(sample_video())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.anyio
async def test_failed_download_is_atomic(tmp_path: Path) -> None:
    """A body cut short (every attempt) leaves neither the target nor a temporary file."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"v" * 100, headers={"content-type": "video/mp4", "content-length": "500"}
        )

    target = tmp_path / "v.mp4"
    with pytest.raises(DownloadIntegrityError):
        await _download(httpx.MockTransport(handler), target)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- key redaction


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every logger (root: veo_async, httpx, httpcore, aiohttp, ...) at DEBUG into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _full_traceback(exc: BaseException) -> str:
    """The whole chained traceback, with every frame's local variables."""
    te = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "".join(te.format())


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[EmulatorServer]:
    """An emulator that accepts only ``KEY``."""
    with EmulatorServer(EmulatorConfig(time_scale=SCALE, api_key=KEY)) as srv:
        yield srv


@pytest.mark.anyio
async def test_key_redacted_in_repr_and_config_dumps() -> None:
    """repr/str/vars of the client and its settings never show the key."""
    async with make_client("https://api.example.com") as c:
        texts = [repr(c), str(c), repr(vars(c)), str(vars(c)), repr(c.http_client.headers)]
        texts.append(repr(c.http_client))
        texts.append(repr(c._api_key))
        texts.append(c.http_client.headers.get("authorization") or "")
    for text in texts:
        assert KEY not in text


@pytest.mark.anyio
async def test_key_redacted_in_logs_errors_and_tracebacks(
    keyed_server: EmulatorServer, debug_logs: io.StringIO, tmp_path: Path
) -> None:
    """Through faults, errors and successes: the key is in no log, message, repr or traceback."""
    srv = keyed_server
    srv.reset()
    srv.emulator.set_faults(FaultConfig())
    errors: list[BaseException] = []
    async with make_client(srv.base_url) as c:
        done = await c.generate(prompt="secret run", timeout=20)
        await c.download(done, tmp_path)
        # (429 paths are covered by the fault matrix; a 100% 429 rate stalls the governor)
        for kind in (
            "server_error",
            "connection_reset",
            "malformed_json",
            "bad_gateway",
            "service_unavailable",
            "slow_response",
        ):
            faults: dict[str, Any] = {kind: 1.0, "slow_response_delay": 1.2}
            srv.emulator.set_faults(FaultConfig(**faults))
            calls = [c.submit(prompt=f"p {kind}")]
            if kind != "slow_response":  # (a slow poll is retried: 3 x 1.2 s for nothing new)
                calls.append(c.get(done.id))
            for call in calls:
                try:
                    await call
                except VeoError as exc:
                    errors.append(exc)
        srv.emulator.set_faults(FaultConfig())
    async with make_client(srv.base_url, api_key=KEY[::-1]) as wrong:
        try:
            await wrong.submit(prompt="wrong key")
        except VeoError as exc:
            errors.append(exc)
    with pytest.raises(ConfigurationError) as bad:
        AsyncVeoClient(KEY + "\n" + KEY, base_url=srv.base_url)
    # the constructor's own ``api_key`` parameter necessarily holds the key, so this one is
    # checked without frame locals; every request error below is checked with them
    for text in (str(bad.value), repr(bad.value), "".join(traceback.format_exception(bad.value))):
        assert KEY not in text
    assert len(errors) >= 12
    logs = debug_logs.getvalue()
    assert "veo_async" in logs and "httpx" in logs  # the loggers did run at DEBUG
    assert KEY not in logs
    for error in errors:
        for text in (str(error), repr(error), repr(vars(error)), _full_traceback(error)):
            assert KEY not in text, type(error)
            assert KEY[::-1] not in text, type(error)
