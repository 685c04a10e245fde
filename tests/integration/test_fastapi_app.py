"""The FastAPI example service, for real: uvicorn on a loopback port in front of the SDK, the
emulator as a second real server (time-compressed), and an httpx client driving both."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from veo_async import AsyncVeoClient, RetryConfig
from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.testing import no_waiting

# `examples/` is not a package, so mypy (which checks examples/) knows the app as
# `fastapi_app.app`; a static `import examples.fastapi_app.app` here would give the same file
# a second module name. Import it by name at run time instead (as uvicorn does).
example = importlib.import_module("examples.fastapi_app.app")

pytestmark = pytest.mark.anyio

TIME_SCALE = 0.002  # a 45 s Veo2 job takes about 0.1 s
SECRET_KEY = "sk-example-SECRET-0123456789abcdef"


class AppServer:
    """The example app under uvicorn in a thread, on a socket bound to a free loopback port."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            lifespan="on",
            loop="asyncio",
            http="h11",
            ws="none",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the example app did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Graceful shutdown (the lifespan's exit runs); idempotent."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        assert not self._thread.is_alive(), "the example app did not shut down"


@dataclass
class Stack:
    """The two real servers."""

    emulator: EmulatorServer
    app: AppServer
    fastapi: FastAPI

    def stats(self) -> dict[str, Any]:
        """The emulator's ledger snapshot."""
        result: dict[str, Any] = self.emulator.emulator.stats()
        return result

    def generation(self, generation_id: str) -> dict[str, Any]:
        """One generation's ledger entry (it must exist)."""
        entry = self.emulator.emulator.generation(generation_id)
        assert entry is not None
        return entry


@contextlib.contextmanager
def running_stack(
    config: EmulatorConfig | None = None,
    *,
    api_key: str = SECRET_KEY,
    settings: Any = None,
) -> Iterator[Stack]:
    """Start the emulator, then the app with a client pointed at it."""
    with EmulatorServer(config or EmulatorConfig(time_scale=TIME_SCALE, seed=7)) as emulator:

        def client_factory() -> AsyncVeoClient:
            return AsyncVeoClient(
                api_key,
                base_url=emulator.base_url,
                time_scale=TIME_SCALE,  # poll at the emulator's pace
                # the emulator's Retry-After is whole (wall) seconds: honour at most 10 ms of it
                retry=RetryConfig(initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.01),
            )

        app = example.create_app(client_factory, settings=settings or example.Settings())
        with AppServer(app) as server:
            yield Stack(emulator, server, app)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One emulator and one app for the happy-path tests of this module."""
    with running_stack() as s:
        yield s


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client for the app."""
    async with httpx.AsyncClient(base_url=stack.app.base_url, timeout=10) as client:
        yield client


Event = tuple[str, dict[str, Any]]


async def read_events(http: httpx.AsyncClient, path: str) -> list[Event]:
    """Read a server-sent event stream to its end: ``[(event, data), ...]``."""
    events: list[Event] = []
    with anyio.fail_after(10):
        async with http.stream("GET", path) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            name, data = "message", ""
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        events.append((name, json.loads(data)))
                    name, data = "message", ""
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data += line.removeprefix("data:").strip()
    return events


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> Any:
    """Poll ``check()`` (sync, or returning an awaitable) until it is truthy; return it."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await anyio.sleep(0.02)


async def health(http: httpx.AsyncClient) -> dict[str, Any]:
    """The app's /healthz answer."""
    answer: dict[str, Any] = (await http.get("/healthz")).json()
    return answer


async def health_is(http: httpx.AsyncClient, **expected: int) -> bool:
    """Whether /healthz shows these values."""
    answer = await health(http)
    return all(answer[k] == v for k, v in expected.items())


async def finished_batch(http: httpx.AsyncClient, batch_id: str) -> dict[str, Any] | None:
    """The batch's view once it is no longer running, else ``None``."""
    view: dict[str, Any] = (await http.get(f"/batches/{batch_id}")).json()
    return None if view["state"] == "running" else view


async def test_concurrent_creates_then_concurrent_event_streams(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """20 concurrent POST /videos each create exactly one generation; 10 SSE streams at once
    each end by themselves with a `completed` event carrying a downloadable video URL."""
    before = stack.stats()
    tag = uuid.uuid4().hex[:8]  # the module's emulator is shared by both backends' runs
    answers: dict[int, httpx.Response] = {}

    async def create(i: int) -> None:
        answers[i] = await http.post(
            "/videos", json={"prompt": f"concurrent fox {tag} {i}", "duration": 5}
        )

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
    assert all(r.status_code == 202 for r in answers.values()), [r.text for r in answers.values()]
    ids = [answers[i].json()["id"] for i in range(20)]
    assert len(set(ids)) == 20
    assert answers[0].headers["location"] == f"/videos/{ids[0]}"
    after = stack.stats()
    assert after["generations_created"] - before["generations_created"] == 20
    assert not [p for p in after["duplicate_prompts"] if tag in p]
    created = {g["id"]: g for g in after["generations"]}
    assert {created[g]["prompt"] for g in ids} == {f"concurrent fox {tag} {i}" for i in range(20)}

    streams: dict[str, list[Event]] = {}

    async def follow(gid: str) -> None:
        streams[gid] = await read_events(http, f"/videos/{gid}/events")

    async with anyio.create_task_group() as tg:
        for gid in ids[:10]:
            tg.start_soon(follow, gid)
    for gid, events in streams.items():
        names = [name for name, _ in events]
        assert names[-1] == "completed", events
        assert set(names[:-1]) <= {"status"}
        final = events[-1][1]
        assert final["id"] == gid
        assert final["done"] is True
        assert final["video_url"]
    video = await http.get(streams[ids[0]][-1][1]["video_url"])
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"  # an MP4

    one = await http.get(f"/videos/{ids[0]}")
    assert one.status_code == 200
    assert one.json()["status"] == "completed"
    # a stream opened on a finished generation is just its final event
    assert [n for n, _ in await read_events(http, f"/videos/{ids[0]}/events")] == ["completed"]
    assert (await health(http))["event_streams"] == 0


async def test_invalid_bodies_are_422_and_reach_nothing(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """Invalid videos and batches get 422 naming each bad field, and the emulator received no
    create request at all (validation happens before any money can be spent)."""
    before = stack.stats()["create_requests"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "a fox", "duration": 9}, "duration"),
        ({"prompt": "a fox", "aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "a fox", "model": "veo-99"}, "model"),
        ({"prompt": "a fox", "colour": "red"}, "colour"),
        ({"prompt": "a fox", "extra_body": {"anything": 1}}, "extra_body"),
        ({"duration": 5}, "prompt"),
    ]
    for body, bad in cases:
        answer = await http.post("/videos", json=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request"
        assert bad in [f["field"] for f in error["fields"]], (body, error)
    duration = (await http.post("/videos", json=cases[0][0])).json()["error"]["fields"][0]
    assert duration["allowed"] == [5, 6, 7, 8]
    assert duration["received"] == 9

    batch = await http.post(
        "/batches",
        json={"prompts": ["ok", {"prompt": "bad", "duration": 9}, "ok too", ""]},
    )
    assert batch.status_code == 422, batch.text
    fields = [f["field"] for f in batch.json()["error"]["fields"]]
    assert fields == ["prompts[1].duration", "prompts[3].prompt"]
    for body in (
        {"prompts": []},
        {"prompts": ["a"], "options": {"model": "veo3"}},
        {"prompts": ["a"] * 101},
        {"prompts": ["a"], "max_concurrency": 0},
    ):
        answer = await http.post("/batches", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request"
    assert stack.stats()["create_requests"] == before


async def test_batch_runs_in_background_to_completion(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """POST /batches answers at once; the batch runs in the app's task group and GET
    /batches/{id} shows its progress until all 30 inputs completed with their own video."""
    before = stack.stats()["generations_created"]
    tag = uuid.uuid4().hex[:8]
    prompts = [f"batch heron {tag} {i}" for i in range(29)]
    answer = await http.post(
        "/batches",
        json={
            "prompts": [*prompts, {"prompt": f"batch heron {tag} 29", "duration": 8}],
            "options": {"aspect_ratio": "16:9"},
            "max_concurrency": 8,
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "running"
    batch_id = answer.json()["id"]
    seen_finished: list[int] = []
    view: dict[str, Any] = {}
    with anyio.fail_after(15):
        while True:
            view = (await http.get(f"/batches/{batch_id}")).json()
            seen_finished.append(view["progress"]["finished"])
            if view["state"] != "running":
                break
            await anyio.sleep(0.05)
    assert view["state"] == "completed", view
    assert view["progress"] == {"finished": 30, "succeeded": 30, "failed": 0, "remaining": 0}
    assert view["counts"]["done"] == 30
    assert view["stop_reason"] is None
    assert seen_finished == sorted(seen_finished)  # progress only grows
    results = view["results"]
    assert [r["index"] for r in results] == list(range(30))
    assert all(r["ok"] and r["status"] == "completed" and r["video_url"] for r in results)
    assert len({r["generation_id"] for r in results}) == 30
    ledger = {g["id"]: g for g in stack.stats()["generations"]}
    for r in results:
        assert ledger[r["generation_id"]]["prompt"] == r["prompt"]
        assert ledger[r["generation_id"]]["body"]["aspect_ratio"] == "16:9"
    assert ledger[results[29]["generation_id"]]["body"]["duration"] == 8
    assert stack.stats()["generations_created"] - before == 30
    assert (await http.get("/batches/no-such-batch")).status_code == 404
    assert (await health(http))["running_batches"] == 0


async def test_event_stream_disconnect_stops_polling() -> None:
    """Closing an event stream mid-generation (after a status event and keep-alives) ends the
    server's polling loop at once: no stream is left open and the emulator sees no more polls."""
    config = EmulatorConfig(time_scale=TIME_SCALE, seed=3, generation_time_factor=500)
    settings = example.Settings(heartbeat=0.01)
    with running_stack(config, settings=settings) as s:
        async with httpx.AsyncClient(base_url=s.app.base_url, timeout=10) as http:
            gid = (await http.post("/videos", json={"prompt": "a slow glacier"})).json()["id"]
            request = f"GET /videos/{gid}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            with anyio.fail_after(10):
                # a raw socket: the "client" reads the first event, then simply goes away
                async with await anyio.connect_tcp("127.0.0.1", s.app.port) as sock:
                    await sock.send(request)
                    received = b""
                    while b"event: status" not in received or b": keep-alive" not in received:
                        received += await sock.receive()
                    assert received.startswith(b"HTTP/1.1 200")
                    assert b"text/event-stream" in received
                    # let it poll a few times while we listen
                    await eventually(lambda: s.generation(gid)["polls"] >= 3)
                    assert (await health(http))["event_streams"] == 1
            await eventually(lambda: health_is(http, event_streams=0), timeout=5)
            polls = s.generation(gid)["polls"]
            await anyio.sleep(0.5)  # about 80 poll steps of the time-scaled policy
            assert s.generation(gid)["polls"] == polls
            assert s.generation(gid)["status"] != "completed"


async def test_sdk_errors_map_to_http_answers(caplog: pytest.LogCaptureFixture) -> None:
    """Rate limiting is 429 with Retry-After, a create of unknown outcome is 502 and not
    retried (one generation billed, no duplicate), unknown ids are 404, a rejected key is 500;
    and the API key appears in no answer and no log record, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    # no_waiting: after a 429 the SDK rightly slows the whole client down (Retry-After, then a
    # learned rate); this test is about the HTTP answers, not about waiting.
    with running_stack() as s, no_waiting():
        emulator = s.emulator.emulator
        async with httpx.AsyncClient(base_url=s.app.base_url, timeout=10) as http:
            bodies: list[str] = []

            emulator.set_faults(rate_limit=1.0)
            limited = await http.post("/videos", json={"prompt": "a limited fox"})
            bodies.append(limited.text)
            assert limited.status_code == 429, limited.text
            assert limited.json()["error"]["type"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            assert emulator.stats()["generations_created"] == 0

            emulator.set_faults(rate_limit=0.0, lost_create=1.0)
            before = emulator.stats()["create_requests"]
            lost = await http.post("/videos", json={"prompt": "a lost fox"})
            bodies.append(lost.text)
            assert lost.status_code == 502, lost.text
            assert lost.json()["error"]["type"] == "create_outcome_unknown"
            assert "NOT retried" in lost.json()["error"]["message"]
            stats = emulator.stats()
            assert stats["create_requests"] - before == 1  # not retried
            assert stats["generations_created"] == 1  # though it was made (and billed)

            emulator.set_faults(lost_create=0.0)
            for path in ("/videos/not-a-real-id", "/videos/not-a-real-id/events"):
                missing = await http.get(path)
                assert missing.status_code == 404, missing.text
                assert missing.json()["error"]["type"] == "not_found"

            emulator.configure(api_key="the-only-accepted-key")
            for method, path, body in (
                ("POST", "/videos", {"prompt": "an unauthorised fox"}),
                ("GET", f"/videos/{stats['generations'][0]['id']}", None),
            ):
                denied = await http.request(method, path, json=body)
                bodies.append(denied.text + str(denied.headers))
                assert denied.status_code == 500, denied.text
                assert denied.json()["error"]["type"] == "misconfigured"

            batch = await http.post("/batches", json={"prompts": ["a", "b", "c"]})
            batch_id = batch.json()["id"]
            view = await eventually(lambda: finished_batch(http, batch_id))
            bodies.append(json.dumps(view))
            assert view["state"] == "failed", view
            assert view["error"]["type"] == "misconfigured"
            assert view["stop_reason"] == "authentication"

    for text in bodies:
        assert SECRET_KEY not in text
    logged = [r.getMessage() for r in caplog.records]
    assert any("AuthenticationError" in m for m in logged)  # the operator is told
    assert not [m for m in logged if SECRET_KEY in m]


async def test_shutdown_cancels_running_batches() -> None:
    """Stopping the app cancels a running batch through the lifespan's task group (no orphan
    task keeps polling) and the server exits cleanly."""
    config = EmulatorConfig(time_scale=TIME_SCALE, seed=5, generation_time_factor=500)
    with running_stack(config) as s:
        async with httpx.AsyncClient(base_url=s.app.base_url, timeout=10) as http:
            answer = await http.post("/batches", json={"prompts": ["slow a", "slow b"]})
            assert answer.status_code == 202
            batch_id = answer.json()["id"]
            await eventually(lambda: s.stats()["generations_created"] == 2)
            service = s.fastapi.state.service
        s.app.stop()  # graceful shutdown: the lifespan cancels its task group
        assert service.batches[batch_id].state == "cancelled"
        with pytest.raises(RuntimeError, match="closed"):
            _ = service.client.http_client  # the lifespan closed the one client
        await anyio.sleep(0.2)  # a poll already on the wire may still be counted
        polls = s.stats()["poll_requests"]
        await anyio.sleep(0.3)
        assert s.stats()["poll_requests"] == polls
