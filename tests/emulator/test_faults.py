"""Each injected fault reaches an httpx client as it would from the real service."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from tests.emulator._helpers import UNIVERSAL, FakeClock
from veo_async.emulator import (
    UNKNOWN_STATUSES,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)

AUTH = {"Authorization": "Bearer k"}
BODY = {"model": "veo2", "prompt": "a fault test"}


@pytest.fixture
def emu() -> Emulator:
    """An emulator on a fake clock (faults are set per test)."""
    return Emulator(EmulatorConfig(seed=2), clock=FakeClock())


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for ``emu``."""
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu.test") as c:
        yield c


async def _completed(emu: Emulator, client: httpx.AsyncClient, *, faults_off: bool = True) -> str:
    """Create a generation (request faults off) and let it end; return its id."""
    saved = emu.config.faults
    if faults_off:
        emu.set_faults(saved.model_validate({}))
    generation_id: str = (await client.post(UNIVERSAL, json=BODY, headers=AUTH)).json()["id"]
    clock = emu._clock
    assert isinstance(clock, FakeClock)
    clock.advance(1000)
    emu.set_faults(saved)
    return generation_id


HTTP_FAULTS: list[tuple[str, int]] = [
    ("rate_limit", 429),
    ("rate_limit_no_retry_after", 429),
    ("server_error", 500),
    ("bad_gateway", 502),
    ("service_unavailable", 503),
    ("gateway_timeout", 504),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "status"), HTTP_FAULTS)
async def test_http_error_faults(
    emu: Emulator, client: httpx.AsyncClient, kind: str, status: int
) -> None:
    """429/500/502/503/504 faults answer creates and polls without making a job."""
    emu.set_faults(**{kind: 1.0})
    for response in (
        await client.post(UNIVERSAL, json=BODY, headers=AUTH),
        await client.get(UNIVERSAL, params={"generation_id": "x"}, headers=AUTH),
    ):
        assert response.status_code == status
        assert response.headers["x-request-id"]
        if kind == "bad_gateway":
            assert response.headers["content-type"].startswith("text/html")
            assert "502 Bad Gateway" in response.text
        else:
            body = response.json()
            assert body["statusCode"] == status
        if kind == "gateway_timeout":
            assert response.json()["message"] == "Generation timeout"
        assert ("retry-after" in response.headers) == (kind == "rate_limit")
    assert emu.ledger.generations_created == 0
    assert emu.ledger.faults_injected[kind] == 2


@pytest.mark.anyio
async def test_gateway_timeout_can_make_the_job(emu: Emulator, client: httpx.AsyncClient) -> None:
    """With gateway_timeout_creates_job a 504 create still makes (and charges) a job."""
    emu.set_faults(gateway_timeout=1.0, gateway_timeout_creates_job=True)
    r = await client.post(UNIVERSAL, json=BODY, headers=AUTH)
    assert r.status_code == 504
    assert emu.ledger.generations_created == 1 and emu.ledger.credits_charged == 120_000


@pytest.mark.anyio
async def test_connection_reset_in_process(emu: Emulator, client: httpx.AsyncClient) -> None:
    """In process a reset surfaces as httpx.ReadError and makes no job."""
    emu.set_faults(connection_reset=1.0)
    with pytest.raises(httpx.ReadError):
        await client.post(UNIVERSAL, json=BODY, headers=AUTH)
    assert emu.ledger.generations_created == 0


@pytest.mark.anyio
async def test_lost_create_in_process(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A lost create raises httpx.ReadError but the job exists and is charged."""
    emu.set_faults(lost_create=1.0)
    with pytest.raises(httpx.ReadError):
        await client.post(UNIVERSAL, json=BODY, headers=AUTH)
    assert emu.ledger.generations_created == 1
    assert emu.ledger.credits_charged == 120_000
    assert emu.ledger.faults_injected["lost_create"] == 1


@pytest.mark.anyio
async def test_malformed_json(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A malformed 200 body does not parse; the create behind it did make the job."""
    emu.set_faults(malformed_json=1.0)
    r = await client.post(UNIVERSAL, json=BODY, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert emu.ledger.generations_created == 1


@pytest.mark.anyio
async def test_unknown_status(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A poll can answer with an undocumented status string; the rest stays valid."""
    gid = await _completed(emu, client)
    emu.set_faults(unknown_status=1.0)
    body = (await client.get(UNIVERSAL, params={"generation_id": gid}, headers=AUTH)).json()
    assert body["status"] in UNKNOWN_STATUSES and body["id"] == gid
    assert emu.ledger.generations[gid].first_completed_poll_at is None


@pytest.mark.anyio
async def test_completed_without_url(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A generation can end completed with video null."""
    emu.set_faults(completed_without_url=1.0)
    gid = await _completed(emu, client, faults_off=False)
    body = (await client.get(UNIVERSAL, params={"generation_id": gid}, headers=AUTH)).json()
    assert body["status"] == "completed" and body["video"] is None


@pytest.mark.anyio
async def test_job_error(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A generation can end in error with an error object."""
    emu.set_faults(job_error=1.0)
    gid = await _completed(emu, client, faults_off=False)
    body = (await client.get(UNIVERSAL, params={"generation_id": gid}, headers=AUTH)).json()
    assert body["status"] == "error" and body["error"]["message"]


@pytest.mark.anyio
async def test_truncated_download_in_process(emu: Emulator, client: httpx.AsyncClient) -> None:
    """In process a truncated download raises httpx.RemoteProtocolError."""
    gid = await _completed(emu, client)
    emu.set_faults(truncated_download=1.0)
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await client.get(f"/cdn/generations/{gid}.mp4")


@pytest.mark.anyio
async def test_slow_response_in_process(emu: Emulator, client: httpx.AsyncClient) -> None:
    """A slow response arrives after slow_response_delay real seconds, still correct."""
    emu.set_faults(slow_response=1.0, slow_response_delay=0.2)
    started = time.monotonic()
    r = await client.post(UNIVERSAL, json=BODY, headers=AUTH)
    assert time.monotonic() - started >= 0.2
    assert r.status_code == 200
    with anyio.move_on_after(0.05) as scope:
        await client.get(UNIVERSAL, params={"generation_id": r.json()["id"]}, headers=AUTH)
    assert scope.cancelled_caught


# ---------------------------------------------------------------- over real sockets


def _server_client(server: EmulatorServer, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=AUTH, **kwargs)


def _done_id(server: EmulatorServer, client: httpx.Client) -> str:
    gid: str = client.post(UNIVERSAL, json=BODY).json()["id"]
    deadline = time.monotonic() + 5
    while client.get(UNIVERSAL, params={"generation_id": gid}).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return gid


def test_connection_reset_over_sockets(emulator_server: EmulatorServer) -> None:
    """Over TCP the client sees httpx.ReadError (RST, no response); the server keeps going."""
    with _server_client(emulator_server) as client:
        gid = _done_id(emulator_server, client)
        emulator_server.set_faults(connection_reset=1.0)
        with pytest.raises(httpx.ReadError):
            client.get(UNIVERSAL, params={"generation_id": gid})
        with pytest.raises(httpx.ReadError):
            client.post(UNIVERSAL, json={**BODY, "prompt": "other"})
        emulator_server.set_faults(connection_reset=0.0)
        assert client.get(UNIVERSAL, params={"generation_id": gid}).status_code == 200
    assert emulator_server.emulator.ledger.generations_created == 1


def test_lost_create_over_sockets(emulator_server: EmulatorServer) -> None:
    """A lost create is a ReadError for the client but a charged job in the ledger."""
    emulator_server.set_faults(lost_create=1.0)
    with _server_client(emulator_server) as client, pytest.raises(httpx.ReadError):
        client.post(UNIVERSAL, json=BODY)
    stats = emulator_server.stats()
    assert stats["generations_created"] == 1 and stats["credits_charged"] == 120_000
    assert stats["generations"][0]["prompt"] == BODY["prompt"]


def test_truncated_download_over_sockets(emulator_server: EmulatorServer) -> None:
    """Content-Length is the full size, the body stops short, httpx raises RemoteProtocolError."""
    with _server_client(emulator_server) as client:
        gid = _done_id(emulator_server, client)
    emulator_server.set_faults(truncated_download=1.0)
    url = emulator_server.url(f"/cdn/generations/{gid}.mp4")
    with httpx.Client() as cdn, cdn.stream("GET", url) as response:
        assert response.status_code == 200
        full = int(response.headers["content-length"])
        received = bytearray()

        def read_all() -> None:
            for chunk in response.iter_bytes():
                received.extend(chunk)

        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            read_all()
    assert 0 < len(received) < full


def test_slow_response_times_out_over_sockets(emulator_server: EmulatorServer) -> None:
    """A slow response trips the client's read timeout, and the create still made its job."""
    emulator_server.set_faults(slow_response=1.0, slow_response_delay=0.5)
    with _server_client(emulator_server, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.post(UNIVERSAL, json=BODY)
    assert emulator_server.emulator.ledger.generations_created == 1


def test_mixed_faults_over_sockets(emulator_server: EmulatorServer) -> None:
    """Under mixed faults every request ends in a response or a transport error, never a hang."""
    emulator_server.configure(faults={"server_error": 0.2, "connection_reset": 0.2})
    outcomes: dict[str, int] = {}
    with _server_client(emulator_server, timeout=5) as client:
        for i in range(60):
            try:
                name = str(client.post(UNIVERSAL, json={**BODY, "prompt": f"p{i}"}).status_code)
            except httpx.TransportError as exc:
                name = type(exc).__name__
            outcomes[name] = outcomes.get(name, 0) + 1
    assert set(outcomes) == {"200", "500", "ReadError"}
    ledger = emulator_server.emulator.ledger
    assert ledger.generations_created == outcomes["200"]
    assert ledger.faults_injected["connection_reset"] == outcomes["ReadError"]
