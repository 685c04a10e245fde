"""The request flags shared by ``generate`` and ``batch`` (``--model``, ``--duration``, ...,
``--field KEY=VALUE``) and how a validation error is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._exceptions import RequestValidationError
from .._inputs import describe_field_error, parse_field_assignment
from .._models import MODEL_REQUESTS

__all__ = [
    "BATCH_RATE_HELP",
    "BATCH_STORE_HELP",
    "describe_validation",
    "flag_for",
    "request_fields",
    "request_options",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: ``batch --rate``: what the rate is per process or for the whole key.
BATCH_RATE_HELP = (
    "Maximum API requests per second (creates and polls together). With --store "
    "redis://..., the API key's total rate, shared by every process of the batch through that "
    "Redis (without --rate they share the pace one of them learns from 429s); with sqlite:// "
    "or no --store, per process."
)
#: ``batch --store``: the store URLs, and the request budget a Redis store brings.
BATCH_STORE_HELP = (
    "Share the batch through a job store: redis://HOST:PORT/DB (several processes or "
    "machines, each with its own --out; they also share the API key's request budget there, "
    "see --rate) or sqlite:///PATH (one machine, rate per process). Without it, a journal in "
    "--out."
)

#: Request fields that ``--field`` may not set: they have their own place on the command line.
_FIELD_REFUSED = {
    "prompt": "the prompt comes from the PROMPT argument (generate) or the input file (batch)",
    "model": "use --model (batch: or a model column in the input file)",
    "extra_body": "pass each extra field as its own --field KEY=VALUE",
}

#: Request flags shared by ``generate`` and ``batch`` (as defaults there): (flag name, field).
_REQUEST_FLAGS = (
    ("duration", "duration"),
    ("aspect_ratio", "aspect_ratio"),
    ("seed", "seed"),
    ("negative_prompt", "negative_prompt"),
    ("enhance_prompt", "enhance_prompt"),
    ("image", "image_url"),
    ("tail_image", "tail_image_url"),
    ("last_image", "last_image_url"),
    ("resolution", "resolution"),
    ("generate_audio", "generate_audio"),
)


def request_options(func: _F) -> _F:
    """Add the request-field flags (model, duration, ..., --field KEY=VALUE)."""
    options = [
        click.option(
            "-m",
            "--model",
            metavar="MODEL",
            help="Model id (default veo2, or veo2/image-to-video with --image); "
            "see `veo-async models`.",
        ),
        click.option(
            "--duration", type=int, help="Clip length in seconds (veo2: 5-8; veo3: 4/6/8)."
        ),
        click.option("--aspect-ratio", metavar="RATIO", help="16:9 or 9:16."),
        click.option("--seed", type=int, help="Seed for similar results across runs."),
        click.option("--negative-prompt", metavar="TEXT", help="What to avoid in the video."),
        click.option(
            "--enhance-prompt/--no-enhance-prompt",
            default=None,
            help="Let the service rewrite the prompt (server default: on).",
        ),
        click.option(
            "--image",
            metavar="URL|FILE",
            help="First frame for image-to-video: a URL or a local file (sent as a data URI).",
        ),
        click.option("--tail-image", metavar="URL|FILE", help="Last frame (veo2/image-to-video)."),
        click.option(
            "--last-image", metavar="URL|FILE", help="Last frame (Veo 3.1 first/last frame)."
        ),
        click.option("--resolution", metavar="RES", help="720p/1080p (Veo 3.x; see the model)."),
        click.option(
            "--generate-audio/--no-generate-audio",
            default=None,
            help="Generate an audio track (Veo 3.x; server default: on).",
        ),
        click.option(
            "--field",
            "fields",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any other body field (VALUE parsed as JSON when it is JSON). Repeatable. A "
            "field the model knows (e.g. person_generation) is validated like its flag (batch: "
            "as a default, a row's own value wins); an unknown one is sent as-is. prompt and "
            "model are refused.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def request_fields(kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Pop the request flags: ``(model, fields, extra_body)`` (media paths still unresolved).

    ``--field KEY=VALUE``: ``prompt``/``model`` are refused (they would silently replace
    every input's own value after validation); a field some model knows becomes a validated
    request field like its flag (refused when its flag is given too); any other key goes to
    ``extra_body`` and is sent as-is.
    """
    model = kwargs.pop("model")
    fields: dict[str, Any] = {}
    for flag, name in _REQUEST_FLAGS:
        value = kwargs.pop(flag)
        if value is not None:
            fields[name] = value
    known = {name for cls in MODEL_REQUESTS.values() for name in cls.model_fields}
    extra: dict[str, Any] = {}
    for text in kwargs.pop("fields"):
        try:
            key, value = parse_field_assignment(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--field") from None
        if key in _FIELD_REFUSED:
            raise click.BadParameter(
                f"--field {key}=... is not allowed: {_FIELD_REFUSED[key]}", param_hint="--field"
            )
        if key in known:
            if key in fields:
                raise click.BadParameter(
                    f"{key} is given twice (as {flag_for(key)} and as --field {key}=...)",
                    param_hint="--field",
                )
            fields[key] = value
        else:
            extra[key] = value
    if model is None and "image_url" in fields:
        model = "veo2/image-to-video"
    return model, fields, extra


def describe_validation(exc: RequestValidationError) -> str:
    lines = [f"  {describe_field_error(err)}" for err in exc.errors]
    if not lines:
        return exc.message
    return "invalid request:\n" + "\n".join(lines)


def flag_for(field: str) -> str:
    for flag, name in _REQUEST_FLAGS:
        if name == field:
            return "--" + flag.replace("_", "-")
    return field
