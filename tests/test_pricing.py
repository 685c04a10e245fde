"""Tests for veo_async._pricing: the price table, estimate_credits and format_credits."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.emulator._helpers import FakeClock, create, poll
from veo_async._models import (
    MODEL_REQUESTS,
    CustomVideoRequest,
    Veo2TextToVideo,
    Veo3TextToVideo,
    Veo31ExtendVideo,
    VideoRequest,
    build_request,
)
from veo_async._pricing import (
    PRICES,
    ModelPrice,
    UnknownModelPriceError,
    estimate_credits,
    estimate_total_credits,
    format_credits,
)
from veo_async._requests import _allowed_values
from veo_async.emulator import Emulator, EmulatorConfig, SchemaRegistry

_MEDIA: dict[str, Any] = {
    "image_url": "https://example.com/first.png",
    "last_image_url": "https://example.com/last.png",
    "image_urls": ["https://example.com/ref.png"],
    "video_url": "https://example.com/clip.mp4",
}


_REGISTRY = SchemaRegistry.from_directory()


def _required_fields(model: str) -> dict[str, Any]:
    cls = MODEL_REQUESTS[model]
    return {
        name: _MEDIA[name]
        for name, info in cls.model_fields.items()
        if info.is_required() and name not in ("model", "prompt")
    }


def _cases() -> list[tuple[str, int | None]]:
    cases: list[tuple[str, int | None]] = []
    for model, cls in sorted(MODEL_REQUESTS.items()):
        durations = _allowed_values(cls, "duration") or []
        cases.append((model, None))
        cases.extend((model, int(d)) for d in durations)
    return cases


def test_every_sdk_model_has_a_price() -> None:
    """Every model the SDK validates requests for has an entry in the default table."""
    assert set(MODEL_REQUESTS) <= set(PRICES)


@pytest.mark.parametrize(("model", "duration"), _cases())
def test_estimate_matches_what_the_emulator_charges(model: str, duration: int | None) -> None:
    """For every model and allowed duration (or none) the estimate equals the emulator's charge."""
    clock = FakeClock()
    emu = Emulator(EmulatorConfig(), clock=clock, registry=_REGISTRY)
    request = build_request("a fox", model=model, duration=duration, **_required_fields(model))
    reply = create(emu, request.to_body())
    assert reply.status in (200, 201), reply.body
    gid = reply.json()["id"]
    clock.advance(100_000)
    done = poll(emu, gid).json()
    assert done["status"] == "completed"
    assert estimate_credits(request) == done["meta"]["usage"]["credits_used"]


def test_veo2_five_seconds_is_the_providers_published_example() -> None:
    """The one figure the provider publishes holds: veo2, 5 s, 120,000 credits."""
    assert estimate_credits(Veo2TextToVideo(prompt="x")) == 120_000
    assert estimate_credits(Veo2TextToVideo(prompt="x", duration=5)) == 120_000
    assert estimate_credits(Veo2TextToVideo(prompt="x", duration=8)) == 192_000


def test_longer_clips_cost_proportionally_more() -> None:
    """Cost is linear in the clip length for every priced model."""
    for model, price in PRICES.items():
        four = estimate_credits({"model": model, "prompt": "x", "duration": 4})
        eight = estimate_credits({"model": model, "prompt": "x", "duration": 8})
        assert eight == 2 * four == 8 * price.credits_per_second


def test_mapping_defaults_to_veo2_and_reads_extra_body() -> None:
    """A mapping without model is veo2; extra_body overrides a field as it would on the wire."""
    assert estimate_credits({"prompt": "x"}) == 120_000
    assert estimate_credits({"prompt": "x", "extra_body": {"duration": 7}}) == 168_000
    request = Veo2TextToVideo(prompt="x", duration=5, extra_body={"duration": 8})
    assert estimate_credits(request) == 192_000


def test_custom_request_of_a_known_model_is_priced() -> None:
    """A CustomVideoRequest for a known model id uses that model's price and duration."""
    request = CustomVideoRequest.model_validate(
        {"model": "google/veo3", "prompt": "x", "duration": 4}
    )
    assert estimate_credits(request) == 4 * 84_000


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("6", 6), ("6s", 6), (" 7S ", 7), ("soon", 5), (True, 5), (0, 5), (-3, 5), (None, 5)],
)
def test_odd_durations_fall_back_to_the_default(duration: object, seconds: int) -> None:
    """Numeric strings count as sent; bools, non-positive and junk use the default length."""
    body = {"model": "veo2", "prompt": "x", "duration": duration}
    assert estimate_credits(body) == seconds * 24_000


def test_non_finite_duration_uses_the_default() -> None:
    """NaN or infinite durations never give a NaN or infinite estimate."""
    for bad in (math.nan, math.inf, "nan", "inf"):
        assert estimate_credits({"model": "veo2", "prompt": "x", "duration": bad}) == 120_000


def test_unknown_model_raises_with_known_models_and_a_suggestion() -> None:
    """An unknown model is an error naming the closest known model and listing them all."""
    with pytest.raises(UnknownModelPriceError) as info:
        estimate_credits(CustomVideoRequest(model="google/veo-3.1-t2v-fats", prompt="x"))
    err = info.value
    assert err.model == "google/veo-3.1-t2v-fats"
    assert "did you mean 'google/veo-3.1-t2v-fast'" in str(err).lower()
    assert err.known == sorted(PRICES)
    for model in PRICES:
        assert model in str(err)
    assert isinstance(err, LookupError)


def test_unknown_model_without_a_close_match_has_no_suggestion() -> None:
    """A far-off name gets the list but no 'did you mean'."""
    with pytest.raises(UnknownModelPriceError) as info:
        estimate_credits({"model": "sora-2", "prompt": "x"})
    assert "did you mean" not in str(info.value).lower()


def test_custom_price_table_and_multipliers() -> None:
    """prices= replaces the table; a multiplier applies only to its exact field value."""
    table = {
        "google/veo3": ModelPrice(
            100, 8, {"generate_audio": {False: 0.5}, "resolution": {"1080P": 2.0}}
        )
    }
    base = Veo3TextToVideo(prompt="x", duration=4)
    assert estimate_credits(base, prices=table) == 400
    silent = Veo3TextToVideo(prompt="x", duration=4, generate_audio=False)
    assert estimate_credits(silent, prices=table) == 200
    loud = Veo3TextToVideo(prompt="x", duration=4, generate_audio=True)
    assert estimate_credits(loud, prices=table) == 400
    both = Veo3TextToVideo(prompt="x", generate_audio=False, resolution="1080P")
    assert estimate_credits(both, prices=table) == 800
    with pytest.raises(UnknownModelPriceError):
        estimate_credits(Veo2TextToVideo(prompt="x"), prices=table)


def test_multiplier_does_not_confuse_one_with_true() -> None:
    """A factor keyed on True does not fire for the integer 1 (Python's True == 1)."""
    table = {"m": ModelPrice(10, 1, {"flag": {True: 3.0}})}
    assert estimate_credits({"model": "m", "prompt": "x", "flag": 1}, prices=table) == 10
    assert estimate_credits({"model": "m", "prompt": "x", "flag": True}, prices=table) == 30


def test_total_is_the_sum_of_the_estimates() -> None:
    """estimate_total_credits adds the per-request estimates (empty: 0)."""
    requests: list[VideoRequest | dict[str, Any]] = [
        Veo2TextToVideo(prompt="a"),
        {"model": "google/veo-3.0-fast", "prompt": "b", "duration": 6},
        Veo31ExtendVideo(prompt="c", video_url="https://example.com/v.mp4"),
    ]
    assert estimate_total_credits(requests) == 120_000 + 6 * 42_000 + 7 * 84_000
    assert estimate_total_credits([]) == 0


def test_estimate_rejects_other_types() -> None:
    """A bare string is not a request (the model would be guessed): TypeError."""
    with pytest.raises(TypeError):
        estimate_credits("a fox")  # type: ignore[arg-type]


def test_the_table_is_json_friendly_and_positive() -> None:
    """Every price is a positive finite rate with a positive default length."""
    for model, price in PRICES.items():
        assert price.credits_per_second > 0 and math.isfinite(price.credits_per_second), model
        assert price.default_seconds > 0, model
    json.dumps({m: p.credits_per_second for m, p in PRICES.items()})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (0.0, "0"),
        (-0.0, "0"),
        (7, "7"),
        (999, "999"),
        (1000, "1,000"),
        (960000, "960,000"),
        (960000.0, "960,000"),
        (1.008e06, "1,008,000"),
        (7.8e07, "78,000,000"),
        (1e21, "1,000,000,000,000,000,000,000"),
        (1234.5, "1,234.5"),
        (1234.567, "1,234.57"),
        (0.004, "0"),
        (0.1, "0.1"),
        (-120000, "-120,000"),
        (-1234.5, "-1,234.5"),
        (None, "unknown"),
        (math.nan, "unknown"),
        (math.inf, "unlimited"),
        (-math.inf, "-unlimited"),
    ],
)
def test_format_credits(value: float | None, text: str) -> None:
    """Credits print with thousands separators, at most two decimals, never an exponent."""
    assert format_credits(value) == text
    assert "e" not in format_credits(value).replace("unknown", "").replace("unlimited", "")


def test_format_credits_rejects_non_numbers() -> None:
    """A string or a bool is a caller bug, not a number of credits."""
    with pytest.raises(TypeError):
        format_credits("120000")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_credits(True)
