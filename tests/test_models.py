"""Request models against the provider's JSON schemas; Generation parsing is lenient."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veo_async import (
    MODEL_REQUESTS,
    CustomVideoRequest,
    Generation,
    GenerationStatus,
    RequestValidationError,
    Veo31LitePreview,
    build_request,
)
from veo_async._models import coerce_request

SCHEMAS = Path(__file__).parent / "schemas"


def _request_schemas() -> dict[str, dict[str, Any]]:
    """Every model id in the provider's files, mapped to its request-body schema."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        doc = json.loads(path.read_text())
        for ops in doc["paths"].values():
            post = ops.get("post")
            if not post:
                continue
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            for model_id in schema["properties"]["model"]["enum"]:
                out[model_id] = schema
    return out


SCHEMA_BY_MODEL = _request_schemas()
NOT_VEO = {"google/gemini-omni-flash-preview"}


def _example_value(name: str, spec: dict[str, Any]) -> Any:
    if "enum" in spec:
        return spec["enum"][-1]
    kind = spec.get("type")
    if kind == "array":
        return ["https://example.com/ref.png"]
    if kind == "boolean":
        return False
    if kind == "integer":
        return 42
    if name.endswith("url"):
        return "https://example.com/frame.png"
    return "a value"


def test_every_provider_veo_model_is_known() -> None:
    """Every Veo model id in the provider's schemas has a request model in the SDK."""
    assert set(SCHEMA_BY_MODEL) - NOT_VEO == set(MODEL_REQUESTS)


@pytest.mark.parametrize("model_id", sorted(MODEL_REQUESTS))
def test_full_body_validates_against_provider_schema(model_id: str) -> None:
    """A request using every field of the model produces a body the provider schema accepts."""
    schema = SCHEMA_BY_MODEL[model_id]
    fields = {
        name: _example_value(name, spec)
        for name, spec in schema["properties"].items()
        if name not in {"model", "prompt"}
    }
    if model_id == "google/veo-3-1-lite-generate-preview":
        fields["duration"] = 8
    request = build_request("A dragon over the mountains", model=model_id, **fields)
    body = request.to_body()
    jsonschema.validate(body, schema)
    assert body["model"] == model_id
    assert set(body) == {"model", "prompt", *fields}


@pytest.mark.parametrize("model_id", sorted(MODEL_REQUESTS))
def test_minimal_body_validates_or_names_required_fields(model_id: str) -> None:
    """With only a prompt, a model validates, or names exactly the schema's missing fields."""
    schema = SCHEMA_BY_MODEL[model_id]
    required = set(schema["required"]) - {"model", "prompt"}
    if not required:
        jsonschema.validate(build_request("x", model=model_id).to_body(), schema)
        return
    with pytest.raises(RequestValidationError) as info:
        build_request("x", model=model_id)
    assert set(info.value.fields) == required


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"duration": 9}, "duration", [5, 6, 7, 8]),
        ({"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9", "9:16"]),
        ({"prompt": ""}, "prompt", None),
        ({"prompt": "   "}, "prompt", None),
        ({"seed": "abc"}, "seed", None),
    ],
)
def test_invalid_values_name_field_and_allowed(
    fields: dict[str, Any], field: str, allowed: list[Any] | None
) -> None:
    """Bad values raise RequestValidationError naming the field and its allowed values."""
    data = {"prompt": "x", **fields}
    with pytest.raises(RequestValidationError) as info:
        build_request(**data)
    err = info.value
    assert err.fields == [field]
    assert field in str(err)
    if allowed is not None:
        assert err.errors[0]["allowed"] == allowed


def test_veo3_durations_differ_from_veo2() -> None:
    """Veo 3 takes 4, 6 or 8 s; 5 is rejected with those values listed."""
    with pytest.raises(RequestValidationError, match="4, 6, 8"):
        build_request("x", model="google/veo3", duration=5)


def test_missing_image_url_for_image_to_video() -> None:
    """Image-to-video without image_url names the missing field."""
    with pytest.raises(RequestValidationError, match="image_url"):
        build_request("x", model="veo2/image-to-video")


def test_unknown_field_is_rejected_with_escape_hatch_hint() -> None:
    """A typo'd field is rejected (it would be paid for) and the message names extra_body."""
    with pytest.raises(RequestValidationError, match="extra_body"):
        build_request("x", durration=5)


def test_unknown_model_suggests_custom_request() -> None:
    """An unknown model id is refused locally with a pointer to CustomVideoRequest."""
    with pytest.raises(RequestValidationError, match="CustomVideoRequest"):
        build_request("x", model="google/veo-9")


def test_custom_request_sends_anything() -> None:
    """CustomVideoRequest passes unknown models and fields through."""
    req = CustomVideoRequest(model="google/veo-9", prompt="x", new_knob=3)  # type: ignore[call-arg]
    assert req.to_body() == {"model": "google/veo-9", "prompt": "x", "new_knob": 3}


def test_lite_last_frame_needs_eight_seconds() -> None:
    """The Lite preview's rule: last_image_url only with duration 8."""
    with pytest.raises(RequestValidationError, match="duration must be 8"):
        build_request(
            "x",
            model="google/veo-3-1-lite-generate-preview",
            last_image_url="https://e/x.png",
            duration=4,
        )
    ok = build_request(
        "x", model="google/veo-3-1-lite-generate-preview", last_image_url="https://e/x.png"
    )
    assert isinstance(ok, Veo31LitePreview)


def test_coerce_accepts_strings_mappings_models() -> None:
    """Batch inputs may be prompts, field mappings or request models."""
    assert coerce_request("a fox").model == "veo2"
    assert coerce_request({"prompt": "a fox", "model": "google/veo3"}).model == "google/veo3"
    req = build_request("a fox")
    assert coerce_request(req) is req
    with pytest.raises(TypeError):
        coerce_request(42)  # type: ignore[arg-type]


def test_expected_seconds_grows_with_duration() -> None:
    """The poll prior grows with clip length."""
    assert build_request("x", duration=8).expected_seconds() > build_request("x").expected_seconds()


# ------------------------------------------------------------------ Generation


def test_generation_keeps_unknowns() -> None:
    """Unknown statuses and fields are kept; old tokens_used and string errors are read."""
    g = Generation.model_validate(
        {
            "id": "g",
            "status": "upscaling",
            "error": "quota exceeded",
            "meta": {"usage": {"tokens_used": 7}},
            "brand_new": {"x": 1},
        }
    )
    assert g.status.value == "upscaling"
    assert not g.status.is_known
    assert not g.is_terminal
    assert g.error_message == "quota exceeded"
    assert g.credits_used == 7
    assert g.model_extra == {"brand_new": {"x": 1}}
    assert Generation.model_validate_json(g.model_dump_json()).status.value == "upscaling"


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        ("queued", False),
        ("generating", False),
        ("waiting", False),
        ("active", False),
        ("completed", True),
        ("error", True),
        ("COMPLETED", True),
    ],
)
def test_status_classification(status: str, terminal: bool) -> None:
    """Documented statuses classify as in progress or terminal, case-insensitively."""
    s = GenerationStatus(status)
    assert s.is_known
    assert s.is_terminal is terminal


def test_error_object_message() -> None:
    """An error object renders as 'name: message'."""
    g = Generation.model_validate(
        {"id": "g", "status": "error", "error": {"name": "Policy", "message": "blocked"}}
    )
    assert g.error_message == "Policy: blocked"
    assert g.failed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["id", "status", "video", "error", "meta", "duration", "x"]),
        json_values,
        max_size=7,
    )
)
def test_arbitrary_bodies_parse_or_raise_typed(body: dict[str, Any]) -> None:
    """Arbitrary JSON never crashes the parser: a Generation, or InvalidResponseError."""
    import httpx

    from veo_async import AsyncVeoClient, InvalidResponseError

    client = AsyncVeoClient("k", base_url="https://api.test")
    response = httpx.Response(
        200,
        content=json.dumps(body).encode(),
        request=httpx.Request("GET", "https://api.test/v2/video/generations"),
    )
    try:
        g = client._parse(response, "GET")
    except InvalidResponseError:
        return
    assert isinstance(g, Generation)
    assert isinstance(g.status, GenerationStatus)
    _ = (g.video_url, g.credits_used, g.error_message, g.succeeded, g.failed)


@settings(max_examples=300, deadline=None)
@given(status=st.text())
def test_arbitrary_status_strings_never_crash(status: str) -> None:
    """Any status string becomes a GenerationStatus."""
    g = Generation.model_validate({"id": "g", "status": status})
    assert g.status.value.lower() == status.lower() or g.status.value == status


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(sorted(MODEL_REQUESTS)),
    fields=st.dictionaries(
        st.sampled_from(
            ["duration", "aspect_ratio", "seed", "resolution", "image_url", "generate_audio"]
        ),
        json_values,
        max_size=4,
    ),
    prompt=st.text(max_size=30),
)
def test_arbitrary_request_values_validate_or_raise_typed(
    model: str, fields: dict[str, Any], prompt: str
) -> None:
    """Arbitrary request values either validate or raise RequestValidationError naming fields."""
    try:
        req = build_request(prompt, model=model, **fields)
    except RequestValidationError as err:
        assert err.fields
        assert all(f for f in err.fields)
        return
    jsonschema.validate(req.to_body(), SCHEMA_BY_MODEL[model])
