"""The API request boundary against a hostile server (issue 13, items 1, 6, 7, 8, 15, 17).

Every case runs on both transports: httpx (asyncio and trio) and aiohttp (asyncio only). Each
asserts the invariant that matters: a create whose reply cannot be read is billed once and
reported as of unknown outcome; a poll's bad reply is a typed, retryable error; every request
ends in bounded time; the key is nowhere.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.hostile import (
    HostileServer,
    Recorded,
    Reply,
    broken_gzip,
    deep_json,
    generation,
)
from veo_async import (
    APIConnectionError,
    APIStatusError,
    AsyncVeoClient,
    CreateOutcomeUnknownError,
    InvalidResponseError,
    RateLimitError,
    RetryConfig,
    VeoError,
)

KEY = "sk-hostile-0123456789abcdef-SECRET"
FAST_RETRY = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture(params=["httpx", "aiohttp"])
def fast(request: pytest.FixtureRequest, anyio_backend: str) -> bool:
    """The transport: httpx on both backends, aiohttp on asyncio only."""
    if request.param == "aiohttp":
        if anyio_backend != "asyncio":
            pytest.skip("the aiohttp transport runs on asyncio only")
        pytest.importorskip("httpx_aiohttp")
        return True
    return False


def client_for(server: HostileServer, fast: bool, **options: Any) -> AsyncVeoClient:
    options.setdefault("retry", FAST_RETRY)
    return AsyncVeoClient(KEY, base_url=server.url, fast_transport=fast, **options)


def on_post(create: Callable[[], Reply]) -> Callable[[Recorded], Reply]:
    """POST gets ``create()``; every GET a completed generation."""

    def script(req: Recorded) -> Reply:
        if req.method == "POST":
            return create()
        return Reply.json(generation("g1", "completed", "http://127.0.0.1:1/v.mp4"))

    return script


# Malformed replies a create (or a poll) may get; each reached the server first.
BAD_REPLIES: dict[str, Callable[[], Reply]] = {
    "broken_gzip": lambda: broken_gzip(generation("g1")),
    "deep_json": lambda: deep_json(),
    "bad_status_line": lambda: Reply(raw=b"HTTP/1.1 2OO NOT-A-STATUS\r\n\r\n{}"),
    "bad_header": lambda: Reply(
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nBad Header\x00: x\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    ),
    "bad_chunk": lambda: Reply(
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"
    ),
    "short_body": lambda: Reply.json(generation("g1"), content_length=500),
    "blank_id": lambda: Reply.json(generation("  ")),
    "no_id": lambda: Reply.json({"status": "queued"}),
    "not_json": lambda: Reply(headers=[("Content-Type", "text/html")], body=b"<html>ok</html>"),
    "over_cap": lambda: Reply.json(generation("g1", pad="x" * 4096)),
    "endless": lambda: Reply(
        headers=[("Content-Type", "application/json")], chunks=[b"[" * 512], endless=True
    ),
    "trickle": lambda: Reply(
        headers=[("Content-Type", "application/json")],
        chunks=[b" "],
        interval=0.2,
        endless=True,
    ),
}
LIMITS = {"request_deadline": 1.5, "max_response_bytes": 2048}


def limits_for(kind: str) -> dict[str, float]:
    """LIMITS; "trickle" (ended only by request_deadline, which every attempt waits out) gets
    a 0.5 s deadline: still past two of its 0.2 s byte gaps, a third of the waiting."""
    return {**LIMITS, "request_deadline": 0.5} if kind == "trickle" else LIMITS


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
async def test_create_with_unreadable_reply_is_outcome_unknown(kind: str, fast: bool) -> None:
    """A create whose reply cannot be read is sent once and raises CreateOutcomeUnknownError."""
    with HostileServer(on_post(BAD_REPLIES[kind])) as server:
        async with client_for(server, fast, **limits_for(kind)) as client:
            with anyio.fail_after(10):
                with pytest.raises(CreateOutcomeUnknownError) as info:
                    await client.submit(prompt="a hostile lighthouse")
        assert server.count("POST") == 1
    assert info.value.request is not None
    assert info.value.request.prompt == "a hostile lighthouse"
    assert isinstance(info.value.__cause__, VeoError)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
async def test_poll_with_unreadable_reply_is_typed_and_retried(kind: str, fast: bool) -> None:
    """A poll's unreadable reply is retried, then raised as a typed, retryable SDK error."""

    def script(req: Recorded) -> Reply:
        return BAD_REPLIES[kind]()

    with HostileServer(script) as server:
        async with client_for(server, fast, **limits_for(kind)) as client:
            with anyio.fail_after(15):
                with pytest.raises(VeoError) as info:
                    await client.get("g1")
        assert server.count("GET") == FAST_RETRY.max_attempts
    assert isinstance(info.value, (InvalidResponseError, APIConnectionError))


@pytest.mark.anyio
async def test_poll_recovers_after_one_bad_reply(fast: bool) -> None:
    """One broken status reply is retried like a failed poll; the next good one is returned."""
    replies = [broken_gzip(generation("g1")), Reply.json(generation("g1", "generating"))]

    def script(req: Recorded) -> Reply:
        return replies.pop(0) if replies else Reply.json(generation("g1", "generating"))

    with HostileServer(script) as server:
        async with client_for(server, fast) as client:
            with anyio.fail_after(10):
                got = await client.get("g1")
        assert server.count("GET") == 2
    assert got.id == "g1"


@pytest.mark.anyio
async def test_trickled_body_ends_at_the_deadline(fast: bool) -> None:
    """A status body sent one byte at a time ends at request_deadline, not never."""

    def script(req: Recorded) -> Reply:
        return Reply(
            headers=[("Content-Type", "application/json")],
            chunks=[b" "],
            interval=0.1,
            endless=True,
        )

    with HostileServer(script) as server:
        retry = RetryConfig(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
        async with client_for(server, fast, request_deadline=0.5, retry=retry) as client:
            started = time.monotonic()
            with anyio.fail_after(10):
                with pytest.raises(APIConnectionError, match="request_deadline"):
                    await client.get("g1")
            elapsed = time.monotonic() - started
        assert server.count("GET") == 2
    assert 0.9 <= elapsed < 5


@pytest.mark.anyio
async def test_endless_body_is_cut_at_the_cap(fast: bool) -> None:
    """An endless body is not read past max_response_bytes (memory stays bounded)."""

    def script(req: Recorded) -> Reply:
        return Reply(
            headers=[("Content-Type", "application/json")], chunks=[b"x" * 65536], endless=True
        )

    with HostileServer(script) as server:
        async with client_for(
            server, fast, max_response_bytes=100_000, retry=RetryConfig(max_attempts=1)
        ) as client:
            with anyio.fail_after(10):
                with pytest.raises(InvalidResponseError, match="max_response_bytes"):
                    await client.get("g1")


@pytest.mark.anyio
async def test_announced_oversize_body_is_not_read(fast: bool) -> None:
    """A Content-Length over the cap is refused before the body is read."""
    with HostileServer(on_post(lambda: Reply.json(generation("g1"), content_length=10**9))) as s:
        async with client_for(s, fast, max_response_bytes=4096) as client:
            with anyio.fail_after(10):
                with pytest.raises(CreateOutcomeUnknownError, match="max_response_bytes"):
                    await client.submit(prompt="x")
        assert s.count("POST") == 1


# ---------------------------------------------------------------- Retry-After (item 8)


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_retry_after_zero_is_not_retry_now(value: str, fast: bool) -> None:
    """429 with Retry-After 0/negative/past: a bounded number of creates over non-zero time."""

    def script(req: Recorded) -> Reply:
        return Reply.json({"message": "slow down"}, status=429, headers=[("Retry-After", value)])

    retry = RetryConfig(max_attempts=2, initial_backoff=0.05, max_backoff=0.1)
    with HostileServer(script) as server:
        async with client_for(server, fast, retry=retry) as client:
            started = time.monotonic()
            with anyio.fail_after(20):
                with pytest.raises(RateLimitError):
                    await client.submit(prompt="x")
            elapsed = time.monotonic() - started
        posts = server.received("POST")
    assert len(posts) == retry.max_attempts * 4 + 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.02  # floored at the computed backoff (half of 0.05 at least)
    assert elapsed >= 0.02 * len(gaps)


@pytest.mark.anyio
async def test_retry_after_beyond_the_cap_raises_at_once(fast: bool) -> None:
    """A Retry-After longer than max_retry_after raises RateLimitError at once, with the wait."""

    def script(req: Recorded) -> Reply:
        return Reply.json(
            {"message": "daily quota exceeded"}, status=429, headers=[("Retry-After", "86400")]
        )

    with HostileServer(script) as server:
        async with client_for(server, fast) as client:
            with anyio.fail_after(5):
                with pytest.raises(RateLimitError, match="86400 s") as info:
                    await client.submit(prompt="x")
        assert server.count("POST") == 1
    assert info.value.retry_after == 86400


# ---------------------------------------------------------------- wait(id) (item 15)


@pytest.mark.anyio
async def test_wait_on_an_id_looks_at_once(fast: bool) -> None:
    """wait('id') sends its first GET immediately (the job's age is unknown)."""
    with HostileServer(on_post(lambda: Reply.json(generation("g1")))) as server:
        async with client_for(server, fast) as client:
            with anyio.fail_after(5):
                done = await client.wait("g1")
        assert server.count("GET") == 1
    assert done.succeeded


@pytest.mark.anyio
async def test_wait_on_an_id_schedules_from_the_reply(fast: bool) -> None:
    """After an in-progress reply, wait('id') polls at the policy's step, not its first offset."""
    replies = ["generating", "completed"]

    def script(req: Recorded) -> Reply:
        status = replies.pop(0) if replies else "completed"
        url = "http://127.0.0.1:1/v.mp4" if status == "completed" else None
        return Reply.json(generation("g1", status, url))

    with HostileServer(script) as server:
        async with client_for(server, fast, time_scale=0.01) as client:
            with anyio.fail_after(5):
                done = await client.wait("g1")
        gets = server.received("GET")
    assert done.succeeded and len(gets) == 2
    first_offset = client.poll_policy.first_delay(45.0)
    assert gets[1].at - gets[0].at < first_offset + 0.5


# ---------------------------------------------------------------- key echo (item 17)


def _echo(req: Recorded) -> Reply:
    auth = req.headers.get("authorization", "")
    body = {
        "message": f"invalid key {auth} (you sent {KEY})",
        "detail": {"received": [auth, {"key": KEY}]},
        "requestId": f"rid-{KEY}",
    }
    status = 401 if req.method == "POST" else 500
    return Reply.json(body, status=status, headers=[("x-request-id", auth)])


def _assert_no_key(error: BaseException, log: str) -> None:
    texts = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        json.dumps(getattr(error, "body", None), default=str),
        str(getattr(error, "request_id", None)),
        log,
    ]
    for text in texts:
        assert KEY not in text
        assert "Bearer sk" not in text


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_echoed_key_is_redacted_everywhere(
    method: str, fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the key (and the Bearer header) leaves it in no error text or log."""
    caplog.set_level(logging.DEBUG)
    with HostileServer(_echo) as server:
        async with client_for(server, fast) as client:
            with anyio.fail_after(10):
                call = client.submit(prompt="x") if method == "POST" else client.get("g1")
                with pytest.raises(APIStatusError) as info:
                    await call
    assert "[redacted]" in str(info.value)
    _assert_no_key(info.value, caplog.text)


@pytest.mark.anyio
async def test_echoed_key_in_a_malformed_reply_is_redacted(
    fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed status line or header carrying the key leaves it in no error or cause."""
    caplog.set_level(logging.DEBUG)
    raw = f"HTTP/1.1 2x0 Bearer {KEY}\r\nX-{KEY}: {KEY}\r\n\r\n".encode()
    with HostileServer(on_post(lambda: Reply(raw=raw))) as server:
        async with client_for(server, fast) as client:
            with anyio.fail_after(10):
                with pytest.raises(CreateOutcomeUnknownError) as info:
                    await client.submit(prompt="x")
    _assert_no_key(info.value, caplog.text)


# ---------------------------------------------------------------- one loop per client


@pytest.mark.parametrize("runner", ["asyncio-httpx", "asyncio-aiohttp", "trio-httpx"])
def test_second_event_loop_is_a_clear_error(runner: str) -> None:
    """A client used under a second event loop raises RuntimeError and leaves no session open."""
    import asyncio

    import trio

    def script(req: Recorded) -> Reply:
        return Reply.json(generation("g1", "generating"))

    backend, transport = runner.split("-")

    def run(func: Callable[[], Any]) -> Any:
        return asyncio.run(func()) if backend == "asyncio" else trio.run(func)

    with HostileServer(script) as server:
        clients = [AsyncVeoClient(KEY, base_url=server.url, fast_transport=transport == "aiohttp")]

        async def poll() -> str:
            return (await clients[0].get("g1")).id

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert run(poll) == "g1"
            with pytest.raises(RuntimeError, match="another event loop"):
                run(poll)
            clients.clear()
            gc.collect()
        assert [str(w.message) for w in caught] == []
        assert server.count("GET") == 1


# ---------------------------------------------------------------- sync facade at exit (item 7)

_SCRIPT = """
import sys
from veo_async import VeoClient
client = VeoClient({key!r}, base_url={url!r}, backend={backend!r}, fast_transport={fast!r})
g = client.submit(prompt="x")
print("submitted", g.id, flush=True)
if {raise_!r}:
    raise SystemExit("bye")
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("raise_", [False, True])
def test_unclosed_sync_client_lets_the_interpreter_exit(backend: str, raise_: bool) -> None:
    """A script that never closes its VeoClient (ends or raises) exits promptly."""
    with HostileServer(lambda req: Reply.json(generation("g1"))) as server:
        code = textwrap.dedent(
            _SCRIPT.format(
                key=KEY, url=server.url, backend=backend, fast=backend == "asyncio", raise_=raise_
            )
        )
        env = {**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        elapsed = time.monotonic() - started
        assert server.count("POST") == 1
    assert "submitted g1" in proc.stdout
    assert proc.returncode == (1 if raise_ else 0), proc.stderr
    assert "Unclosed" not in proc.stderr and "ResourceWarning" not in proc.stderr
    assert elapsed < 30


def test_sync_client_garbage_collected_is_closed() -> None:
    """A VeoClient dropped without close() stops its loop thread when collected."""
    from veo_async import VeoClient

    with HostileServer(lambda req: Reply.json(generation("g1"))) as server:
        client = VeoClient(KEY, base_url=server.url)
        assert client.submit(prompt="x").id == "g1"
        finalizer = client._finalizer
        del client
        gc.collect()
        assert not finalizer.alive
