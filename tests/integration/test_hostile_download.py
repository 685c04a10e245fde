"""Downloads from a hostile video host (tests/hostile.py), on every transport.

Each case runs on httpx (asyncio and trio) and on the aiohttp transport (asyncio), and asserts
the invariants that matter, not just "no exception":

* every failure is a typed :class:`DownloadError` (never a raw httpx/aiohttp/OS error);
* no file at the target after a failure, and no temporary ``.part`` file left in the folder;
* bounded time (``anyio.fail_after``);
* no credential of the HTTP client (API key, ``auth=``, cookies, proxy auth) reaches the host;
* what is saved is the decoded video, of the announced length, and its checksum is the file's.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import resource
import signal
import sys
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.hostile import HostileServer, Recorded, Reply, gzipped
from veo_async import (
    AsyncVeoClient,
    DownloadError,
    DownloadIntegrityError,
    Generation,
    RetryConfig,
    VeoError,
)
from veo_async._download import DownloadTargetExistsError
from veo_async.emulator import sample_video

KEY = "sk-HOSTILE-0123456789abcdef0123456789abcdef"
RETRY = RetryConfig(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
TIMEOUT = httpx.Timeout(2.0, connect=2.0)
LIMIT = 15.0  # seconds any single case may take
VIDEO = sample_video()
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-custom-token")


# ---------------------------------------------------------------------------- transports


@pytest.fixture(
    params=[("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")],
    ids=["httpx-asyncio", "httpx-trio", "aiohttp-asyncio"],
)
def setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(event loop, transport): httpx on both loops, aiohttp where it exists (asyncio)."""
    return tuple(request.param)


@pytest.fixture
def anyio_backend(setup: tuple[str, str]) -> str:
    """The event loop of this case (overrides the project-wide fixture)."""
    return setup[0]


@pytest.fixture
def transport(setup: tuple[str, str]) -> str:
    """``"httpx"`` or ``"aiohttp"``."""
    return setup[1]


def user_http(transport: str, **options: Any) -> httpx.AsyncClient:
    """A user's own httpx client on the transport under test."""
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        options["transport"] = AiohttpTransport()
    return httpx.AsyncClient(**options)


def veo(transport: str, *, http: httpx.AsyncClient | None = None, **options: Any) -> AsyncVeoClient:
    """An SDK client whose API host is NOT the hostile server (so it is 'another host')."""
    opts: dict[str, Any] = {
        "base_url": "https://api.example.com",
        "retry": RETRY,
        "timeout": TIMEOUT,
        "http_client": http,
    }
    if http is None:
        opts["fast_transport"] = transport == "aiohttp"
    opts.update(options)
    return AsyncVeoClient(KEY, **opts)


async def fetch(transport: str, url: str, target: Path, **options: Any) -> Any:
    """``client.download(url, target)`` through the SDK on the transport under test."""
    async with veo(transport, **options) as client:
        if client.transport_name != "user":
            assert client.http_client is not None
            expected = "aiohttp" if transport == "aiohttp" else "httpx"
            assert client.transport_name == expected
        return await client.download(url, target)


def leftovers(folder: Path) -> list[str]:
    """Every entry in the folder (the target and any temporary file)."""
    return sorted(p.name for p in folder.iterdir())


def serve(reply: Reply | Callable[[Recorded], Reply]) -> HostileServer:
    """A hostile server answering every request with ``reply`` (or ``reply(request)``)."""
    return HostileServer(reply if callable(reply) else (lambda _req: reply))


def video_reply(body: bytes = VIDEO, ctype: str | None = "video/mp4", **kw: Any) -> Reply:
    """A 200 with ``body`` and the given content type (``None``: no Content-Type at all)."""
    headers = [("Content-Type", ctype)] if ctype is not None else []
    return Reply(headers=headers + list(kw.pop("headers", [])), body=body, **kw)


def raw_reply(status: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
    """Status line, headers and body in ONE send (so the client reads them together)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return Reply(raw=f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + body)


# ---------------------------------------------------------------------------- item 10


@pytest.mark.anyio
async def test_redirect_loop_is_a_typed_bounded_failure(transport: str, tmp_path: Path) -> None:
    """A CDN that redirects to itself forever: a DownloadError, bounded requests, no file."""
    with (
        serve(Reply(302, headers=[("Location", "/v.mp4")])) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadError, match="redirect") as info,
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert not isinstance(info.value, DownloadIntegrityError)
    assert 1 < server.count("GET") <= 11  # hops capped at 10; a loop is not retried
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_redirect_is_followed_to_the_video(transport: str, tmp_path: Path) -> None:
    """A normal CDN redirect still works: the video is saved whole, checksum of the file."""

    def script(req: Recorded) -> Reply:
        if req.path == "/start.mp4":
            return Reply(307, headers=[("Location", "/cdn/real.mp4")])
        return video_reply()

    with serve(script) as server, anyio.fail_after(LIMIT):
        video = await fetch(transport, f"{server.url}/start.mp4", tmp_path / "v.mp4")
    assert [r.path for r in server.received()] == ["/start.mp4", "/cdn/real.mp4"]
    assert (tmp_path / "v.mp4").read_bytes() == VIDEO
    assert video.sha256 == hashlib.sha256(VIDEO).hexdigest() and video.size == len(VIDEO)
    assert leftovers(tmp_path) == ["v.mp4"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/v.mp4",
        "http://cdn.example.com/v.mp4\r\nX-Injected: 1",
        "http://cdn.example.com/a\nb.mp4",
        "",
        "   ",
        "ftp://cdn.example.com/v.mp4",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http:///v.mp4",
        "http://cdn.example.com:99999/v.mp4",
    ],
)
async def test_unusable_video_urls_are_typed_errors(
    transport: str, tmp_path: Path, url: str
) -> None:
    """Unparsable, CR/LF-bearing, empty or non-http video URLs: a DownloadError, nothing sent."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=VIDEO, headers={"content-type": "video/mp4"})

    generation = Generation.model_validate(
        {"id": "gen-1", "status": "completed", "video": {"url": url}}
    )
    async with (
        veo(transport) as client,
        httpx.AsyncClient(transport=httpx.MockTransport(record)) as mock,
        veo(transport, http=mock) as mocked,
    ):
        with anyio.fail_after(LIMIT):
            for c in (client, mocked):
                for target in (tmp_path, tmp_path / "v.mp4"):  # a folder: named from the URL
                    with pytest.raises(DownloadError) as info:
                        await c.download(url, target)
                    assert "\r" not in str(info.value) and "\n" not in str(info.value)
                    with pytest.raises(VeoError):  # (GenerationFailedError when blank)
                        await c.download(generation, target)
    assert seen == []
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw=b"HTTP/1.1 200 \xff\xfe garbage\r\n\r\n"),
        Reply(raw=b"NOT-HTTP AT ALL\r\n\r\n"),
        Reply(raw=b""),  # the host hangs up without a reply
        Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\nhello"),
        Reply(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbroken\r\n"),
    ],
    ids=["bad-status-line", "not-http", "hang-up", "two-lengths", "bad-chunk"],
)
async def test_any_transport_error_is_a_typed_error(
    transport: str, tmp_path: Path, reply: Reply
) -> None:
    """Malformed replies and hang-ups: a DownloadError after the retries, never a raw error."""
    with serve(reply) as server, anyio.fail_after(LIMIT), pytest.raises(DownloadError) as info:
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert info.value.__cause__ is not None or isinstance(info.value, DownloadIntegrityError)
    assert 1 <= server.count("GET") <= RETRY.max_attempts * 2  # (aiohttp may retry a GET once)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_existing_target_is_typed_and_still_a_file_exists_error(
    transport: str, tmp_path: Path
) -> None:
    """An existing file: DownloadError and FileExistsError at once; nothing is downloaded."""
    target = tmp_path / "v.mp4"
    target.write_bytes(b"precious")
    with (
        serve(video_reply()) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadTargetExistsError) as info,
    ):
        await fetch(transport, f"{server.url}/v.mp4", target)
    assert isinstance(info.value, DownloadError) and isinstance(info.value, FileExistsError)
    assert server.count() == 0
    assert target.read_bytes() == b"precious" and leftovers(tmp_path) == ["v.mp4"]


# ---------------------------------------------------------------------------- item 11


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every write to a downloaded file fails with ENOSPC (counted), as on a full disk."""
    calls: list[int] = []

    async def full(self: Any, data: bytes) -> int:
        calls.append(len(data))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(anyio.AsyncFile, "write", full)
    return calls


@pytest.mark.anyio
async def test_disk_full_names_the_folder_and_leaves_nothing(
    transport: str, tmp_path: Path, disk_full: list[int]
) -> None:
    """ENOSPC while writing: one DownloadError naming the folder and the disk; no files left."""
    folder = tmp_path / "out"
    with (
        serve(video_reply()) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadError) as info,
    ):
        await fetch(transport, f"{server.url}/v.mp4", folder / "v.mp4")
    message = str(info.value)
    assert str(folder) in message and "disk is full" in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert server.count("GET") == 1  # a full disk is not retried
    assert disk_full and leftovers(folder) == []


@pytest.mark.anyio
async def test_unwritable_folder_is_a_typed_error(transport: str, tmp_path: Path) -> None:
    """A target folder that cannot exist (a file is in the way): DownloadError naming it."""
    blocker = tmp_path / "out"
    blocker.write_bytes(b"a file, not a folder")
    with serve(video_reply()) as server, anyio.fail_after(LIMIT):
        for folder in (blocker, blocker / "deeper"):
            with pytest.raises(DownloadError) as info:
                await fetch(transport, f"{server.url}/v.mp4", folder / "v.mp4")
            assert str(folder) in str(info.value)
            assert isinstance(info.value.__cause__, OSError)
    assert server.count() == 0
    assert leftovers(tmp_path) == ["out"] and blocker.read_bytes() == b"a file, not a folder"


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A real write limit from the kernel: no file may grow past ``limit`` bytes (EFBIG)."""
    old_limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limits)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics checked on Linux")
async def test_real_write_failure_leaves_no_temp_file(transport: str, tmp_path: Path) -> None:
    """The kernel refuses the write (file size limit): DownloadError naming the folder, no file."""
    with serve(video_reply()) as server, anyio.fail_after(LIMIT):
        async with veo(transport) as client:
            with file_size_limit(4096), pytest.raises(DownloadError) as info:
                await client.download(f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EFBIG
    assert server.count("GET") == 1
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- item 12


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "raw-deflate", "gzip-2"])
async def test_encoded_video_is_saved_decoded(
    transport: str, tmp_path: Path, encoding: str
) -> None:
    """A host that compresses anyway: the file is the decoded video, checksum of the file."""
    if encoding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, header = packer.compress(VIDEO) + packer.flush(), "deflate"
    elif encoding == "deflate":
        body, header = zlib.compress(VIDEO), "deflate"
    elif encoding == "gzip-2":  # two gzip members, as `cat a.gz b.gz` makes
        half = len(VIDEO) // 2
        body, header = gzip.compress(VIDEO[:half]) + gzip.compress(VIDEO[half:]), "gzip"
    else:
        body, header = gzip.compress(VIDEO), encoding
    reply = Reply(headers=[("Content-Type", "video/mp4"), ("Content-Encoding", header)], body=body)
    with serve(reply) as server, anyio.fail_after(LIMIT):
        video = await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == VIDEO
    assert video.size == len(VIDEO) and video.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert [r.headers.get("accept-encoding") for r in server.received()] == ["identity"]
    assert leftovers(tmp_path) == ["v.mp4"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (
            Reply(
                headers=[("Content-Type", "video/mp4"), ("Content-Encoding", "gzip")],
                body=b"\x1f\x8b\x08\x00garbage" + VIDEO,
            ),
            "corrupt",
        ),
        (
            Reply(
                headers=[("Content-Type", "video/mp4"), ("Content-Encoding", "gzip")],
                body=gzip.compress(VIDEO)[:-100],  # whole reply, but the gzip stream is cut
            ),
            "ends early",
        ),
        (
            Reply(
                headers=[("Content-Type", "video/mp4"), ("Content-Encoding", "br")],
                body=VIDEO,
            ),
            "does not decode",
        ),
        (
            Reply(
                headers=[("Content-Type", "video/mp4"), ("Content-Encoding", "zstd, gzip")],
                body=gzip.compress(VIDEO),
            ),
            "does not decode",
        ),
        (video_reply(gzip.compress(VIDEO), ctype=None), "gzip"),  # gzip bytes, not labelled
    ],
    ids=["broken-gzip", "cut-gzip", "brotli", "zstd", "unlabelled-gzip"],
)
async def test_undecodable_video_is_refused(
    transport: str, tmp_path: Path, reply: Reply, match: str
) -> None:
    """Broken, cut or unsupported encodings: DownloadIntegrityError, never compressed bytes."""
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match=match),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert server.count("GET") == 1  # a corrupt body is not retried
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_cap_counts_decoded_bytes(transport: str, tmp_path: Path) -> None:
    """A small gzip body that inflates past the cap (a bomb) is refused early; no file."""
    bomb = gzip.compress(b"\0" * (16 * 1024 * 1024))  # 16 MiB of zeros in ~16 KiB
    reply = gzipped(bomb, "video/mp4")
    reply.body = bomb
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match="cap"),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4", max_download_bytes=10**6)
    assert len(bomb) < 10**6 and server.count("GET") == 1
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_content_length_counts_wire_bytes(transport: str, tmp_path: Path) -> None:
    """With an encoding, Content-Length is the compressed size: a cut body is truncation."""
    body = gzip.compress(VIDEO)
    reply = Reply(
        headers=[("Content-Type", "video/mp4"), ("Content-Encoding", "gzip")],
        body=body[: len(body) // 2],
        content_length=len(body),
    )
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match="truncated"),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert server.count("GET") == RETRY.max_attempts  # truncation is retried, then reported
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- item 13


@pytest.mark.anyio
@pytest.mark.parametrize("one_send", [True, False], ids=["one-send", "two-sends"])
async def test_body_longer_than_content_length(
    transport: str, tmp_path: Path, one_send: bool
) -> None:
    """More bytes than Content-Length: DownloadIntegrityError on both transports, no file."""
    headers = [("Content-Type", "video/mp4"), ("Connection", "close")]
    body = VIDEO + b"\0" * 5000
    if one_send:
        reply = raw_reply("200 OK", [*headers, ("Content-Length", str(len(VIDEO)))], body)
    else:
        reply = Reply(headers=headers[:1], body=body, content_length=len(VIDEO))
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match="longer than its Content-Length"),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert server.count("GET") == 1  # not retried: the host says something else than it sends
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_body_longer_than_content_length_on_a_kept_alive_connection(
    transport: str, tmp_path: Path
) -> None:
    """Extra bytes on a keep-alive connection: never success, always a typed error, no file."""
    reply = Reply(
        headers=[("Content-Type", "video/mp4")],
        body=VIDEO + b"\0" * 5000,
        content_length=len(VIDEO),
        keep_alive=True,
    )
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert server.count("GET") >= 1
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("got", [0, 1000, len(VIDEO) - 1])
async def test_body_shorter_than_content_length(transport: str, tmp_path: Path, got: int) -> None:
    """Fewer bytes than Content-Length: retried, then DownloadIntegrityError; no file."""
    reply = video_reply(VIDEO[:got], content_length=len(VIDEO))
    with (
        serve(reply) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match="truncated"),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert RETRY.max_attempts <= server.count("GET") <= RETRY.max_attempts * 2
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- item 16

WEBM = b"\x1a\x45\xdf\xa3" + b"\x9f\x42\x86\x81\x01" + bytes(range(256)) * 8
QUICKTIME = b"\x00\x00\x00\x08wide" + b"\x00\x00\x10\x00mdat" + bytes(range(256)) * 8


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ctype", "body", "what"),
    [
        (None, b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML page"),
        (None, b"\n  <html><head></head></html>", "HTML page"),
        (None, b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "XML"),
        (None, b'{"error": "expired signature"}', "JSON"),
        ("application/octet-stream", b"[1, 2, 3]", "JSON"),
        ("application/octet-stream", b"Forbidden: the link expired\n" * 40, "plain text"),
        ("binary/octet-stream", bytes(range(1, 256)) * 4, "not an MP4"),
        (None, b"tiny", "plain text"),
        ("video/mp4", b"<html><body>502 Bad Gateway</body></html>", "HTML page"),
        ("video/mp4", b'\xef\xbb\xbf{"error": "x"}', "JSON"),
    ],
)
async def test_non_video_bodies_are_refused(
    transport: str, tmp_path: Path, ctype: str | None, body: bytes, what: str
) -> None:
    """Markup, JSON, text or unknown bytes without a video type are not saved as .mp4."""
    with (
        serve(video_reply(body, ctype=ctype)) as server,
        anyio.fail_after(LIMIT),
        pytest.raises(DownloadIntegrityError, match=what),
    ):
        await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert server.count("GET") == 1
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        (None, VIDEO),
        ("application/octet-stream", VIDEO),
        ("", VIDEO),
        (None, WEBM),
        ("binary/octet-stream", QUICKTIME),
        ("video/mp4; charset=binary", VIDEO),
    ],
    ids=["mp4-untyped", "mp4-octet", "mp4-empty-type", "webm", "quicktime", "mp4-typed"],
)
async def test_real_videos_without_a_video_type_are_saved(
    transport: str, tmp_path: Path, ctype: str | None, body: bytes
) -> None:
    """MP4 (ftyp), QuickTime and WebM/Matroska bodies are recognised by their first bytes."""
    with serve(video_reply(body, ctype=ctype)) as server, anyio.fail_after(LIMIT):
        video = await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == body
    assert video.size == len(body) and video.sha256 == hashlib.sha256(body).hexdigest()
    assert leftovers(tmp_path) == ["v.mp4"]


# ---------------------------------------------------------------------------- item 18


class TokenAuth(httpx.Auth):
    """A custom auth scheme: a header of its own, and a count of the requests it signed."""

    def __init__(self) -> None:
        self.signed: list[str] = []

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.signed.append(str(request.url))
        request.headers["X-Custom-Token"] = "custom-token-SECRET"
        yield request


def credential_client(transport: str, auth: httpx.Auth) -> httpx.AsyncClient:
    """A user's http client carrying every kind of credential the SDK must not forward."""
    return user_http(
        transport,
        auth=auth,
        headers={
            "Authorization": f"Bearer {KEY}",
            "Proxy-Authorization": "Basic cHJveHk6U0VDUkVU",
            "Cookie": "session=cookie-SECRET",
        },
        cookies={"jar": "jar-SECRET"},
    )


def assert_no_credentials(server: HostileServer) -> None:
    """No request the server saw carried a credential (header name or secret value)."""
    assert server.count() >= 1
    for req in server.received():
        for name in CREDENTIAL_HEADERS:
            assert name not in req.headers, (name, req.headers)
        flat = " ".join(req.headers.values())
        for secret in (KEY, "SECRET", "cHJveHk", "dXNlcjpwYXNzd29yZA"):
            assert secret not in flat


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["basic", "custom"])
async def test_user_auth_never_reaches_the_video_host(
    transport: str, tmp_path: Path, kind: str
) -> None:
    """A user http_client's auth=, Authorization, Cookie, proxy auth stay home (redirects too)."""

    def script(req: Recorded) -> Reply:
        if req.path == "/v.mp4":
            return Reply(302, headers=[("Location", "/cdn/v.mp4"), ("Set-Cookie", "cdn=1; Path=/")])
        return video_reply()

    auth: httpx.Auth = httpx.BasicAuth("user", "password") if kind == "basic" else TokenAuth()
    with serve(script) as server, anyio.fail_after(LIMIT):
        async with credential_client(transport, auth) as http:
            video = await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4", http=http)
            # the user's client itself is left as it was: its auth and headers still work
            assert http.auth is auth and http.headers["cookie"] == "session=cookie-SECRET"
    assert video.size == len(VIDEO) and (tmp_path / "v.mp4").read_bytes() == VIDEO
    assert [r.path for r in server.received()] == ["/v.mp4", "/cdn/v.mp4"]
    assert_no_credentials(server)
    if isinstance(auth, TokenAuth):
        assert auth.signed == []  # the auth flow never even ran


@pytest.mark.anyio
async def test_key_never_reaches_a_video_host_that_fails(transport: str, tmp_path: Path) -> None:
    """Through retries (5xx, truncation) the credentials stay off every attempt."""
    replies = iter([Reply(503), video_reply(VIDEO[:100], content_length=len(VIDEO))])

    def script(req: Recorded) -> Reply:
        return next(replies, video_reply())

    with serve(script) as server, anyio.fail_after(LIMIT):
        async with credential_client(transport, TokenAuth()) as http:
            await fetch(
                transport,
                f"{server.url}/v.mp4",
                tmp_path / "v.mp4",
                http=http,
                retry=RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.02),
            )
    assert server.count("GET") >= 3
    assert_no_credentials(server)


# ---------------------------------------------------------------------------- cancellation


@pytest.mark.anyio
async def test_cancelled_download_leaves_nothing(transport: str, tmp_path: Path) -> None:
    """A download cancelled mid-body (an endless trickle) leaves no file and no temp file."""
    reply = video_reply(VIDEO[:4096], content_length=None, chunks=[b"\0" * 1024], interval=0.02)
    reply.endless = True
    with serve(reply) as server, anyio.fail_after(LIMIT):
        with anyio.move_on_after(0.5) as scope:
            await fetch(transport, f"{server.url}/v.mp4", tmp_path / "v.mp4")
    assert scope.cancelled_caught and server.count("GET") == 1
    assert leftovers(tmp_path) == []


def test_every_download_error_is_a_veo_error() -> None:
    """The typed errors a batch records as one job's failure are all VeoErrors."""
    for cls in (DownloadError, DownloadIntegrityError, DownloadTargetExistsError):
        assert issubclass(cls, VeoError)


@pytest.mark.anyio
async def test_api_host_videos_keep_the_users_auth_but_never_the_key(
    transport: str, tmp_path: Path
) -> None:
    """A video on the API host itself may use the client's auth=; the API key still never goes."""
    with serve(video_reply()) as server, anyio.fail_after(LIMIT):
        auth = TokenAuth()
        async with user_http(
            transport, auth=auth, headers={"Authorization": f"Bearer {KEY}"}
        ) as http:
            await fetch(
                transport, f"{server.url}/v.mp4", tmp_path / "v.mp4", http=http, base_url=server.url
            )
    (request,) = server.received()
    assert auth.signed == [f"{server.url}/v.mp4"]  # the user's own auth, for the API host
    assert request.headers["x-custom-token"] == "custom-token-SECRET"
    assert "authorization" not in request.headers
    assert KEY not in " ".join(request.headers.values())
    assert leftovers(tmp_path) == ["v.mp4"]
