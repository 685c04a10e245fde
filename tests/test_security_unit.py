"""Property-based checks of the untrusted-input edges (filling gaps left by test_models.py).

* Any response (status code, bytes, JSON shape, headers) is turned into a ``Generation`` or a
  typed :class:`~veo_async.VeoError`; the parser never raises anything else.
* ``safe_filename`` never yields a path separator, a dot-file, a traversal or an odd character.
* ``parse_retry_after`` never raises and never returns a negative, NaN or infinite delay.
* Mappings of request fields (as batch inputs) validate or raise a typed error naming fields.
* A key or ``Bearer`` value a server echoes anywhere in an error reply is redacted.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from veo_async import AsyncVeoClient, Generation, RequestValidationError, VeoError
from veo_async._download import safe_filename
from veo_async._exceptions import redact, scrub_error
from veo_async._models import coerce_request
from veo_async._retry import parse_retry_after

KEY = "sk-unit-secret-5e1f"
ECHO_KEY = "sk-echo-0123456789abcdef"
CLIENT = AsyncVeoClient(KEY, base_url="https://api.test")
REQUEST = httpx.Request("GET", "https://api.test/v2/video/generations")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


def _parse(status: int, content: bytes, headers: dict[str, str] | None = None) -> None:
    response = httpx.Response(status, content=content, headers=headers or {}, request=REQUEST)
    try:
        g = CLIENT._parse(response, "GET")
    except VeoError as exc:
        assert KEY not in str(exc)
        return
    assert 200 <= status < 300
    assert isinstance(g, Generation)
    _ = (g.status.is_known, g.video_url, g.credits_used, g.error_message, g.succeeded, g.failed)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=599),
    body=json_values,
    retry_after=st.none()
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
def test_any_status_and_json_body_gives_generation_or_typed_error(
    status: int, body: Any, retry_after: str | None
) -> None:
    """Any status code with any JSON body (top-level list, string, number...) is handled."""
    headers = {"retry-after": retry_after} if retry_after is not None else None
    _parse(status, json.dumps(body).encode(), headers)


@settings(max_examples=300, deadline=None)
@given(status=st.sampled_from([200, 201, 400, 401, 403, 404, 429, 500, 502]), raw=st.binary())
def test_arbitrary_bytes_never_crash_the_parser(status: int, raw: bytes) -> None:
    """Random bytes (broken JSON, HTML, binary, bad UTF-8) give a typed error, never a crash."""
    _parse(status, raw, {"content-type": "application/json"})


@settings(max_examples=200, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {"id": st.text(max_size=10), "status": st.text(max_size=12)},
        optional={
            "video": json_values,
            "error": json_values,
            "meta": st.fixed_dictionaries({}, optional={"usage": json_values}),
            "statusCode": st.one_of(st.integers(), st.text(max_size=5)),
        },
    )
)
def test_generation_like_bodies_with_hostile_fields(fields: dict[str, Any]) -> None:
    """Bodies shaped like a generation but with hostile nested values never crash."""
    _parse(200, json.dumps(fields).encode())


@settings(max_examples=500, deadline=None)
@given(stem=st.text())
def test_safe_filename_is_always_safe(stem: str) -> None:
    """Any prompt or id becomes a plain file name: no separator, no dot-file, bounded, ASCII."""
    name = safe_filename(stem)
    assert name.endswith(".mp4")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and not name.startswith("-")
    assert name not in {".mp4", "..mp4"}
    assert len(name) <= 84
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


@settings(max_examples=300, deadline=None)
@given(value=st.none() | st.text(max_size=40))
def test_retry_after_parsing_never_raises(value: str | None) -> None:
    """Any Retry-After header value gives None or a finite, non-negative delay."""
    delay = parse_retry_after(value)
    assert delay is None or (math.isfinite(delay) and delay >= 0)


@settings(max_examples=300, deadline=None)
@given(
    mapping=st.dictionaries(
        st.sampled_from(
            ["prompt", "model", "duration", "aspect_ratio", "seed", "negative_prompt", "bogus"]
        ),
        json_values,
        max_size=5,
    )
)
def test_batch_input_mappings_validate_or_name_the_field(mapping: dict[str, Any]) -> None:
    """A mapping given as a batch input validates, or raises a typed error naming fields."""
    try:
        request = coerce_request(mapping)
    except RequestValidationError as err:
        assert err.fields and all(err.fields)
        return
    body = request.to_body()
    assert body["prompt"] == mapping["prompt"]


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 400, 401, 403, 404, 429, 500, 502]),
    body=json_values,
    prefix=st.text(max_size=5),
    bearer=st.booleans(),
)
def test_echoed_secrets_are_redacted_from_any_error(
    status: int, body: Any, prefix: str, bearer: bool
) -> None:
    """A key or Bearer token echoed anywhere in a reply is in no scrubbed error attribute."""
    secret = f"Bearer {ECHO_KEY}" if bearer else ECHO_KEY
    echoed = {"message": prefix + secret, "nested": [body, {secret: secret}], "requestId": secret}
    response = httpx.Response(
        status,
        content=json.dumps(echoed).encode(),
        headers={"x-request-id": secret, "location": secret},
        request=REQUEST,
    )
    try:
        CLIENT._parse(response, "GET")
    except VeoError as exc:
        error = scrub_error(exc, [ECHO_KEY])
        text = repr((str(error), repr(error), vars(error), error.args))
        assert ECHO_KEY not in text
        return
    assert 200 <= status < 300


def test_redact_leaves_short_keys_and_plain_text_alone() -> None:
    """Short secrets are not searched as text (they would match words); Bearer values always go."""
    assert redact("a key of k", ["k"]) == "a key of k"
    assert redact("auth: Bearer abc.def", []) == "auth: Bearer [redacted]"
    assert redact({"bearer%20xyz": ("Bearer  t",)}, []) == {
        "bearer [redacted]": ("Bearer [redacted]",)
    }
