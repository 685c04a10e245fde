"""Shared helpers for the emulator tests: a fake clock, schema loading, request shortcuts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from veo_async.emulator import Emulator, EmulatorConfig, Reply

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
UNIVERSAL = "/v2/video/generations"
VENDOR = "/v2/generate/video/google/generation"
BASE = "http://emulator.test"
T0 = 1_800_000_000.0


class FakeClock:
    """A manually advanced clock (epoch seconds)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def make_emulator(clock: FakeClock | None = None, **config: Any) -> Emulator:
    """An emulator with a fake clock and the given config fields."""
    return Emulator(EmulatorConfig(**config), clock=clock or FakeClock())


def create(
    emu: Emulator,
    body: dict[str, Any] | None = None,
    *,
    key: str = "key",
    path: str = UNIVERSAL,
    **fields: Any,
) -> Reply:
    """Call the create handler directly (no HTTP)."""
    payload = body if body is not None else {"model": "veo2", "prompt": "a prompt", **fields}
    return emu.handle_create(path, f"Bearer {key}", json.dumps(payload).encode(), BASE)


def poll(emu: Emulator, generation_id: str, *, key: str = "key", path: str = UNIVERSAL) -> Reply:
    """Call the poll handler directly (no HTTP)."""
    return emu.handle_poll(path, f"Bearer {key}", generation_id, BASE)


def to_json_schema(schema: Any) -> Any:
    """Turn OpenAPI 3.0 ``nullable`` into JSON Schema so jsonschema can check it."""
    if isinstance(schema, dict):
        out = {key: to_json_schema(value) for key, value in schema.items() if key != "nullable"}
        if schema.get("nullable"):
            if "type" in out:
                out["type"] = [out["type"], "null"]
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    return schema


def load_document(name: str) -> dict[str, Any]:
    """One provider OpenAPI file from tests/schemas."""
    result: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return result


def request_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(path, model): request schema}`` for every create operation in the provider files."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for file in sorted(SCHEMAS.glob("*.json")):
        document = json.loads(file.read_text(encoding="utf-8"))
        for path, operations in document["paths"].items():
            post = operations.get("post")
            if not post:
                continue
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            for model in schema["properties"]["model"]["enum"]:
                out[(path, model)] = schema
    return out


def response_schema() -> dict[str, Any]:
    """The universal poll endpoint's Generation schema, as JSON Schema."""
    document = load_document("universal-video-fetch.json")
    schema = document["paths"][UNIVERSAL]["get"]["responses"]["200"]["content"]
    result: dict[str, Any] = to_json_schema(schema["application/json"]["schema"])
    return result


def vendor_response_schema() -> dict[str, Any]:
    """The vendor path's (older) Generation schema, as JSON Schema."""
    document = load_document("veo2-text-to-video.json")
    schema = document["components"]["schemas"]["Video.v2.PollVideoResponseDTO"]
    result: dict[str, Any] = to_json_schema(schema)
    return result


def minimal_body(model: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A valid body with only the required fields."""
    body: dict[str, Any] = {"model": model}
    for name in schema.get("required", []):
        if name == "model":
            continue
        spec = schema["properties"][name]
        if spec.get("type") == "array":
            body[name] = ["https://example.com/ref.png"]
        elif name.endswith("url"):
            body[name] = "https://example.com/frame.png"
        else:
            body[name] = f"a {model} test clip"
    return body
