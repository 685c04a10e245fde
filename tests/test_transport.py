"""The transport choice and the direct aiohttp path for status requests (issue 16).

On asyncio the default client runs httpx over aiohttp and sends status requests straight to the
aiohttp session (:mod:`veo_async._transport`). These tests pin down the choice (trio, the opt-out
and a user's ``http_client`` keep httpx) and prove the direct path is a pure CPU optimisation:
against the same hostile replies it sends the same request and ends in the same typed error (or
the same generation) as the httpx-over-aiohttp path it replaces.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from tests.hostile import HostileServer, Recorded, Reply, broken_gzip, deep_json, generation
from veo_async import AsyncVeoClient, ConfigurationError, Generation, RetryConfig, VeoError

KEY = "sk-transport-0123456789abcdef-SECRET"
ONE_TRY = RetryConfig(max_attempts=1)


def _completed(req: Recorded) -> Reply:
    if req.method == "POST":
        return Reply.json(generation("g1"))
    return Reply.json(generation("g1", "completed", "http://127.0.0.1:1/v.mp4"))


class _SendCounter:
    """Counts requests that went through ``httpx.AsyncClient.send`` (not the direct path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.methods: list[str] = []
        original = httpx.AsyncClient.send

        async def send(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
            self.methods.append(request.method)
            return await original(client, request, **kw)

        monkeypatch.setattr(httpx.AsyncClient, "send", send)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_default_on_asyncio_sends_status_requests_direct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Default client on asyncio: aiohttp underneath, GETs skip httpx's send, a create does not."""
    counter = _SendCounter(monkeypatch)
    with HostileServer(_completed) as server:
        async with AsyncVeoClient(KEY, base_url=server.url) as client:
            with anyio.fail_after(10):
                created = await client.submit(prompt="a lighthouse")
                got = await client.get(created.id)
                again = await client.get(created.id)
            assert client.transport_name == "aiohttp"
        assert server.count("POST") == 1
        assert server.count("GET") == 2
    assert got.succeeded and again.succeeded
    assert counter.methods == ["POST"]


@pytest.mark.anyio
@pytest.mark.parametrize("fast", [None, False])
async def test_trio_and_the_opt_out_use_httpx_for_everything(
    fast: bool | None, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio (any setting) and with fast_transport=False, every request goes through httpx."""
    if anyio_backend == "asyncio" and fast is None:
        pytest.skip("the default on asyncio is the aiohttp transport (test above)")
    counter = _SendCounter(monkeypatch)
    with HostileServer(_completed) as server:
        async with AsyncVeoClient(KEY, base_url=server.url, fast_transport=fast) as client:
            with anyio.fail_after(10):
                await client.get("g1")
                await client.get("g1")
            assert client.transport_name == "httpx"
        assert server.count("GET") == 2
    assert counter.methods == ["GET", "GET"]


@pytest.mark.anyio
async def test_a_user_http_client_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """With http_client=..., every status request goes through that client (no direct path)."""
    counter = _SendCounter(monkeypatch)
    with HostileServer(_completed) as server:
        async with httpx.AsyncClient() as http:
            client = AsyncVeoClient(KEY, base_url=server.url, http_client=http)
            with anyio.fail_after(10):
                got = await client.get("g1")
            await client.aclose()
            assert not http.is_closed  # the user's client is theirs to close
        assert server.count("GET") == 1
    assert client.transport_name == "user"
    assert got.succeeded
    assert counter.methods == ["GET"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_without_httpx_aiohttp_the_default_falls_back_and_true_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where httpx-aiohttp is absent (PyPy), the default uses httpx; fast_transport=True says
    how to install it, before anything is sent."""
    import veo_async._transport

    monkeypatch.setattr(veo_async._transport, "fast_transport_available", lambda: False)
    with HostileServer(_completed) as server:
        async with AsyncVeoClient(KEY, base_url=server.url) as client:
            with anyio.fail_after(10):
                got = await client.get("g1")
            assert client.transport_name == "httpx"
        insisting = AsyncVeoClient(KEY, base_url=server.url, fast_transport=True)
        with pytest.raises(ConfigurationError, match=r"veo-async\[fast\]"):
            await insisting.get("g1")
        await insisting.aclose()
        assert server.count("GET") == 1
    assert got.succeeded


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_closing_the_client_closes_the_shared_session() -> None:
    """The direct path's aiohttp session is the transport's, closed with the client."""
    with HostileServer(_completed) as server:
        async with AsyncVeoClient(KEY, base_url=server.url) as client:
            with anyio.fail_after(10):
                await client.get("g1")
            direct = client._direct
            assert direct is not None
            open_before = [direct.closed]
        assert open_before == [False]
        assert direct.closed
        with pytest.raises(RuntimeError, match="closed"):
            await client.get("g1")
        assert server.count("GET") == 1


# ---------------------------------------------------------------- the same as httpx's path


async def _outcome(server: HostileServer, gid: str, direct: bool, **options: Any) -> Any:
    """What one status request ends in, on the direct path or on httpx over aiohttp."""
    options.setdefault("retry", ONE_TRY)
    async with AsyncVeoClient(KEY, base_url=server.url, **options) as client:
        assert client.transport_name == "aiohttp" and client._direct is not None
        if not direct:
            client._direct = None  # the path every request took before: httpx's send
        with anyio.fail_after(10):
            try:
                got = await client.get(gid)
            except VeoError as exc:
                fields = ("request_sent", "status_code", "request_id", "retry_after", "body")
                return (type(exc).__name__, str(exc), {f: getattr(exc, f, None) for f in fields})
    assert isinstance(got, Generation)
    return ("ok", got.model_dump(mode="json"))


_REPLIES: dict[str, Callable[[], Reply]] = {
    "ok": lambda: Reply.json(generation("g1", "generating", extra={"x": [1, 2]})),
    "ok_gzip": lambda: _gzipped_json(generation("g1", "completed", "https://cdn/v.mp4")),
    "ok_chunked": lambda: Reply(
        headers=[("Content-Type", "application/json")],
        chunks=[b'{"id": "g1", ', b'"status": "queued"}'],
        content_length=None,
    ),
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
    "over_cap_gzip": lambda: _gzipped_json(generation("g1", pad="x" * 4096)),
    "announced_over_cap": lambda: Reply.json(generation("g1"), content_length=10**9),
    "endless": lambda: Reply(
        headers=[("Content-Type", "application/json")], chunks=[b"[" * 512], endless=True
    ),
    "trickle": lambda: Reply(
        headers=[("Content-Type", "application/json")], chunks=[b" "], interval=0.1, endless=True
    ),
    "not_found": lambda: Reply.json({"message": "no such generation"}, status=404),
    "rate_limited": lambda: Reply.json(
        {"message": "slow down"}, status=429, headers=[("Retry-After", "86400")]
    ),
    "server_error_two_request_ids": lambda: Reply.json(
        {"message": "boom"}, status=503, headers=[("x-request-id", "a"), ("X-Request-Id", "b")]
    ),
    "redirect": lambda: Reply(status=302, headers=[("Location", "https://evil.example/x")]),
    "key_echoed": lambda: Reply.json(
        {"message": f"bad key Bearer {KEY}", "requestId": KEY},
        status=401,
        headers=[("x-request-id", f"Bearer {KEY}")],
    ),
}


def _gzipped_json(obj: Any) -> Reply:
    return Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body=gzip.compress(json.dumps(obj).encode()),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", sorted(_REPLIES))
async def test_direct_path_ends_as_the_httpx_path(kind: str) -> None:
    """For every hostile reply the direct path gives the same error (type, text, fields) or the
    same generation as httpx over aiohttp, sends the same request, and never leaks the key."""
    with HostileServer(lambda req: _REPLIES[kind]()) as server:
        options = {"request_deadline": 0.6, "max_response_bytes": 2048}
        via_httpx = await _outcome(server, "g 1/ä?&=x", direct=False, **options)
        direct = await _outcome(server, "g 1/ä?&=x", direct=True, **options)
        first, second = server.received("GET")
    assert direct == via_httpx
    assert KEY not in repr(direct)
    assert second.target == first.target
    assert second.query == first.query == {"generation_id": "g 1/ä?&=x"}
    assert second.headers == first.headers
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert second.headers["user-agent"].startswith("veo-async/")


@pytest.mark.parametrize(
    "params",
    [
        {"generation_id": "gen-0123_abc.~"},
        {"generation_id": "g 1/ä?&=x+%20"},
        {"a": "1", "generation_id": "x:y@z"},
        {"generation_id": ""},
    ],
)
def test_query_is_encoded_as_httpx_encodes_params(params: dict[str, str]) -> None:
    """The direct path's query string is the one httpx builds from the same params."""
    from veo_async._transport import _query

    expected = httpx.URL("http://h/p").copy_merge_params(params).query.decode()
    assert _query(params) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_direct_path_reuses_connections() -> None:
    """Status requests on the direct path share keep-alive connections (one for 20 GETs)."""
    connections: set[int] = set()

    def script(req: Recorded) -> Reply:
        return Reply.json(generation("g1", "generating"), keep_alive=True)

    with HostileServer(script) as server:
        async with AsyncVeoClient(KEY, base_url=server.url) as client:
            with anyio.fail_after(10):
                for _ in range(20):
                    await client.get("g1")
        connections = {id(t) for t in server._threads}
        assert server.count("GET") == 20
    assert len(connections) == 1


def test_a_plain_install_on_cpython_brings_the_aiohttp_transport() -> None:
    """httpx-aiohttp and aiohttp are core dependencies on CPython only, in the range tested."""
    from importlib.metadata import version
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    pyproject = Path(__file__).parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    core = {r.name: r for r in map(Requirement, project["dependencies"])}
    for name in ("httpx-aiohttp", "aiohttp"):
        req = core[name]
        assert req.marker is not None
        assert req.marker.evaluate({"platform_python_implementation": "CPython"})
        assert not req.marker.evaluate({"platform_python_implementation": "PyPy"})
        assert req.specifier.contains(version(name))  # the version these tests ran on
    fast = {r.name for r in map(Requirement, project["optional-dependencies"]["fast"])}
    assert fast == {"httpx-aiohttp", "aiohttp"}  # the extra still works elsewhere
