"""The emulator's small schema validator agrees with jsonschema on the provider's schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulator._helpers import SCHEMAS, UNIVERSAL, VENDOR, minimal_body, request_schemas
from veo_async.emulator import SchemaRegistry
from veo_async.emulator._validation import validate_value

REQUESTS = request_schemas()
KEYS = sorted(REQUESTS)
PACKAGED = SchemaRegistry.from_directory()
FROM_TESTS = SchemaRegistry.from_directory(SCHEMAS)

_WRONG: list[Any] = [None, 3, 2.5, True, "text", [], {}, ["https://x.test/a.png"] * 7, ""]


def _valid_value(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec.get("type")
    if kind == "integer":
        return st.integers(-(2**31), 2**31)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(st.just("https://example.com/r.png"), max_size=spec.get("maxItems", 4))
    if spec.get("format") == "uri":
        return st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA"])
    return st.text(min_size=spec.get("minLength", 0), max_size=20)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """A (path, model, body) with each field omitted, valid, or of a wrong value."""
    path, model = draw(st.sampled_from(KEYS))
    schema = REQUESTS[(path, model)]
    body: dict[str, Any] = {"model": model}
    for name, spec in schema["properties"].items():
        if name == "model":
            continue
        choice = draw(st.sampled_from(["omit", "valid", "valid", "wrong"]))
        if choice == "valid":
            body[name] = draw(_valid_value(spec))
        elif choice == "wrong":
            wrong = draw(st.sampled_from(_WRONG))
            if spec.get("format") == "uri" and isinstance(wrong, str):
                wrong = 5  # jsonschema does not check formats; keep the comparison fair
            body[name] = wrong
    return path, model, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_validator_agrees_with_jsonschema(case: tuple[str, str, dict[str, Any]]) -> None:
    """For random bodies, the emulator accepts exactly what jsonschema (Draft 7) accepts."""
    path, model, body = case
    expected_valid = jsonschema.Draft7Validator(REQUESTS[(path, model)]).is_valid(body)
    spec, errors = PACKAGED.validate(path, body)
    assert spec is not None and spec.model == model
    assert (errors == []) == expected_valid, errors


def test_minimal_bodies_of_every_model_are_valid() -> None:
    """A body with just the required fields is valid for every model on its path."""
    for (path, model), schema in REQUESTS.items():
        body = minimal_body(model, schema)
        jsonschema.validate(body, schema)
        assert PACKAGED.validate(path, body)[1] == []


def test_packaged_schemas_match_the_test_copies() -> None:
    """The schemas shipped in the package index the same models as tests/schemas."""
    for path in (UNIVERSAL, VENDOR):
        assert set(PACKAGED.models(path)) == set(FROM_TESTS.models(path))
    assert set(PACKAGED.models(UNIVERSAL)) == {m for (p, m) in REQUESTS if p == UNIVERSAL}
    assert set(PACKAGED.models(VENDOR)) == {"veo2", "veo2/image-to-video"}


def test_uri_format_is_checked_loosely() -> None:
    """format: uri accepts http(s) URLs and data: URIs and rejects bare words."""
    schema = {"type": "string", "format": "uri"}
    assert validate_value(schema, "https://example.com/x.png") == []
    assert validate_value(schema, "data:image/png;base64,AAAA") == []
    assert validate_value(schema, "not a url")[0]["expected"] == "uri"


def test_booleans_are_not_integers_and_integral_floats_are() -> None:
    """true is not an integer enum member; 5.0 counts as the integer 5 (JSON has one number)."""
    schema = {"type": "integer", "enum": [5, 6]}
    assert validate_value(schema, True)[0]["received"] == "boolean"
    assert validate_value(schema, 5.0) == []
    assert validate_value(schema, 5.5)[0]["received"] == "float"


def test_min_length_and_max_items() -> None:
    """minLength and maxItems produce too_small / too_big errors at the right path."""
    _, errors = PACKAGED.validate(
        UNIVERSAL,
        {"model": "google/gemini-omni-flash-preview", "prompt": "", "image_urls": ["u"] * 7},
    )
    codes = {(tuple(e["path"]), e["code"]) for e in errors}
    assert (("prompt",), "too_small") in codes
    assert (("image_urls",), "too_big") in codes
    assert (("image_urls", 0), "invalid_string") in codes
