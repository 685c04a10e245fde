"""The emulator speaks the documented contract: paths, codes, shapes, validation, auth, 404s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from tests.emulator._helpers import (
    UNIVERSAL,
    VENDOR,
    FakeClock,
    minimal_body,
    request_schemas,
    response_schema,
    vendor_response_schema,
)
from veo_async.emulator import EmulatorConfig, FaultConfig, create_app

pytestmark = pytest.mark.anyio

ERROR_KEYS = {"message", "path", "requestId", "statusCode", "timestamp"}
AUTH = {"Authorization": "Bearer test-key"}
GENERATION = response_schema()
REQUESTS = request_schemas()
UNIVERSAL_MODELS = sorted(model for (path, model) in REQUESTS if path == UNIVERSAL)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock shared by the app and the test."""
    return FakeClock()


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client (ASGITransport) for a fresh emulator on a fake clock."""
    app = create_app(EmulatorConfig(seed=7), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu.test") as c:
        yield c


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check the documented error body and the request-id header; return the body."""
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert body.keys() >= ERROR_KEYS
    assert body["statusCode"] == status
    assert body["path"] == response.request.url.path
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["timestamp"].endswith("Z")
    return body


async def test_vendor_create_returns_201_generation(client: httpx.AsyncClient) -> None:
    """A veo2 create on the vendor path answers 201 with a schema-valid queued Generation."""
    r = await client.post(VENDOR, json={"model": "veo2", "prompt": "a fox"}, headers=AUTH)
    assert r.status_code == 201
    assert r.headers["x-request-id"]
    body = r.json()
    jsonschema.validate(body, GENERATION)
    jsonschema.validate(body, vendor_response_schema())
    assert body["status"] == "queued"
    assert body["video"] is None and body["error"] is None


@pytest.mark.parametrize("model", UNIVERSAL_MODELS)
async def test_universal_create_accepts_every_model(client: httpx.AsyncClient, model: str) -> None:
    """Every model in the provider files is accepted on the universal path with a 200."""
    body = minimal_body(model, REQUESTS[(UNIVERSAL, model)])
    jsonschema.validate(body, REQUESTS[(UNIVERSAL, model)])
    r = await client.post(UNIVERSAL, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), GENERATION)


async def test_vendor_path_takes_veo2_image_to_video_only(client: httpx.AsyncClient) -> None:
    """The vendor path accepts veo2 and veo2/image-to-video but not the Veo 3 models."""
    body = {"model": "veo2/image-to-video", "prompt": "p", "image_url": "https://x.test/a.png"}
    assert (await client.post(VENDOR, json=body, headers=AUTH)).status_code == 201
    r = await client.post(VENDOR, json={"model": "google/veo3", "prompt": "p"}, headers=AUTH)
    error = assert_error(r, 400)["errors"][0]
    assert error["path"] == ["model"]
    assert "'veo2'" in error["expected"] and error["received"] == "'google/veo3'"


async def test_validation_error_has_expected_and_received(client: httpx.AsyncClient) -> None:
    """A bad enum gets 400 "Body validation error" with per-field Expected/Received detail."""
    body = {"model": "veo2", "prompt": "p", "duration": 9, "aspect_ratio": "4:3"}
    r = await client.post(UNIVERSAL, json=body, headers=AUTH)
    detail = assert_error(r, 400)
    assert detail["message"] == "Body validation error"
    by_field = {tuple(e["path"]): e for e in detail["errors"]}
    assert by_field[("duration",)]["expected"] == "5 | 6 | 7 | 8"
    assert by_field[("duration",)]["received"] == "9"
    assert by_field[("aspect_ratio",)]["expected"] == "'16:9' | '9:16'"
    assert all(e["message"] for e in detail["errors"])


async def test_missing_required_fields_are_reported(client: httpx.AsyncClient) -> None:
    """Missing prompt / image_url are reported as Required with received "undefined"."""
    r = await client.post(UNIVERSAL, json={"model": "google/veo-3.1-i2v"}, headers=AUTH)
    errors = assert_error(r, 400)["errors"]
    assert {tuple(e["path"]) for e in errors} == {("prompt",), ("image_url",)}
    assert all(e["received"] == "undefined" and e["message"] == "Required" for e in errors)


async def test_wrong_types_and_bad_json_are_400(client: httpx.AsyncClient) -> None:
    """Wrong field types, a non-object body and unparsable JSON all get 400."""
    r = await client.post(UNIVERSAL, json={"model": "veo2", "prompt": 3, "seed": "x"}, headers=AUTH)
    errors = assert_error(r, 400)["errors"]
    assert {(tuple(e["path"]), e["expected"], e["received"]) for e in errors} == {
        (("prompt",), "string", "number"),
        (("seed",), "number", "string"),
    }
    assert_error(await client.post(UNIVERSAL, json=[1], headers=AUTH), 400)
    r = await client.post(UNIVERSAL, content=b"{not json", headers=AUTH)
    assert_error(r, 400)


async def test_unknown_extra_fields_are_accepted(client: httpx.AsyncClient) -> None:
    """Fields the schema does not know are tolerated, as the real API does."""
    body = {"model": "veo2", "prompt": "p", "x_trace": {"a": 1}, "resolution": "720p"}
    r = await client.post(UNIVERSAL, json=body, headers=AUTH)
    assert r.status_code == 200


async def test_missing_or_wrong_key_is_401(clock: FakeClock) -> None:
    """No key, a non-Bearer header and (when configured) a different key all get 401."""
    app = create_app(EmulatorConfig(api_key="right"), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emu.test"
    ) as c:
        body = {"model": "veo2", "prompt": "p"}
        assert_error(await c.post(UNIVERSAL, json=body), 401)
        assert_error(await c.post(UNIVERSAL, json=body, headers={"Authorization": "x"}), 401)
        bearer_empty = {"Authorization": "Bearer "}
        assert_error(await c.post(UNIVERSAL, json=body, headers=bearer_empty), 401)
        wrong = {"Authorization": "Bearer wrong"}
        assert_error(await c.get(UNIVERSAL, params={"generation_id": "x"}, headers=wrong), 401)
        right = {"Authorization": "Bearer right"}
        assert (await c.post(UNIVERSAL, json=body, headers=right)).status_code == 200


async def test_any_key_accepted_by_default(client: httpx.AsyncClient) -> None:
    """Without a configured key any non-empty Bearer key is accepted."""
    body = {"model": "veo2", "prompt": "p"}
    for key in ("a", "another-key"):
        r = await client.post(UNIVERSAL, json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200


async def test_unknown_ids_and_paths_are_404(client: httpx.AsyncClient) -> None:
    """Unknown generation ids and unknown paths get 404 with the documented error body."""
    r = await client.get(UNIVERSAL, params={"generation_id": "nope"}, headers=AUTH)
    assert_error(r, 404)
    assert_error(await client.get("/v1/whatever", headers=AUTH), 404)
    assert_error(await client.post("/v2/video/generation", json={}, headers=AUTH), 404)
    r = await client.get(UNIVERSAL, headers=AUTH)
    assert assert_error(r, 400)["errors"][0]["path"] == ["generation_id"]


async def test_poll_by_another_key_is_404(client: httpx.AsyncClient) -> None:
    """A generation is only visible to the key that created it."""
    r = await client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}, headers=AUTH)
    other = {"Authorization": "Bearer someone-else"}
    r = await client.get(UNIVERSAL, params={"generation_id": r.json()["id"]}, headers=other)
    assert_error(r, 404)


async def test_poll_lifecycle_and_shapes(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Polls go queued -> generating -> completed, schema-valid, with a URL and credits."""
    r = await client.post(VENDOR, json={"model": "veo2", "prompt": "a fox"}, headers=AUTH)
    gid = r.json()["id"]
    seen = []
    for _ in range(12):
        for path in (VENDOR, UNIVERSAL):
            p = await client.get(path, params={"generation_id": gid}, headers=AUTH)
            assert p.status_code == 200
            jsonschema.validate(p.json(), GENERATION)
            jsonschema.validate(p.json(), vendor_response_schema())
            seen.append(p.json()["status"])
        clock.advance(5.0)
    assert seen[0] == "queued" and "generating" in seen and seen[-1] == "completed"
    assert seen == sorted(seen, key=["queued", "generating", "completed"].index)
    done = p.json()
    assert done["video"]["url"] == f"http://emu.test/cdn/generations/{gid}.mp4"
    assert done["meta"]["usage"]["credits_used"] == 120000
    assert done["error"] is None


async def test_failed_generation_has_error_object(clock: FakeClock) -> None:
    """A generation that fails ends in status error with an {name, message} object."""
    app = create_app(EmulatorConfig(faults=FaultConfig(job_error=1.0)), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emu.test", headers=AUTH
    ) as c:
        gid = (await c.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"})).json()["id"]
        clock.advance(500)
        body = (await c.get(UNIVERSAL, params={"generation_id": gid})).json()
    jsonschema.validate(body, GENERATION)
    assert body["status"] == "error" and body["video"] is None
    assert set(body["error"]) == {"name", "message"}


async def test_every_response_has_request_id(client: httpx.AsyncClient) -> None:
    """Successes, errors, CDN answers and control endpoints all carry x-request-id."""
    responses = [
        await client.post(UNIVERSAL, json={"model": "veo2", "prompt": "p"}, headers=AUTH),
        await client.post(UNIVERSAL, json={}, headers=AUTH),
        await client.get(UNIVERSAL, params={"generation_id": "x"}),
        await client.get("/cdn/generations/none.mp4"),
        await client.get("/missing"),
        await client.delete(UNIVERSAL, headers=AUTH),
        await client.get("/_emulator/stats"),
    ]
    assert all(r.headers.get("x-request-id") for r in responses)
    assert responses[5].status_code == 405


async def test_create_status_codes_are_configurable(clock: FakeClock) -> None:
    """The success code of each create path can be changed (both 200 and 201 are seen)."""
    config = EmulatorConfig(vendor_create_status=200, universal_create_status=201)
    app = create_app(config, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emu.test", headers=AUTH
    ) as c:
        body = {"model": "veo2", "prompt": "p"}
        assert (await c.post(VENDOR, json=body)).status_code == 200
        assert (await c.post(UNIVERSAL, json=body)).status_code == 201
