"""Request models per model family (the response is in ``_generation``).

Request models mirror the provider's OpenAPI schemas (``POST /v2/video/generations``): each
known model id maps to one pydantic class whose fields, enums and required fields are the
provider's. Unknown fields are rejected on known models (a typo would otherwise be sent, and
paid for, silently); send new fields with ``extra_body=`` or use :class:`CustomVideoRequest`
for models the SDK does not know yet.

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._exceptions import RequestValidationError

__all__ = [
    "AspectRatio",
    "CustomVideoRequest",
    "MODEL_REQUESTS",
    "Veo2ImageToVideo",
    "Veo2TextToVideo",
    "Veo3ImageToVideo",
    "Veo3TextToVideo",
    "Veo31ExtendVideo",
    "Veo31FirstLastFrame",
    "Veo31ImageToVideo",
    "Veo31LiteGenerate001",
    "Veo31LitePreview",
    "Veo31ReferenceToVideo",
    "Veo31TextToVideo",
    "VideoRequest",
    "build_request",
]

AspectRatio = Literal["16:9", "9:16"]


# --------------------------------------------------------------------------- requests


class VideoRequest(BaseModel):
    """Base of every create-request model: ``model`` and ``prompt`` plus model fields.

    ``to_body()`` gives the JSON body that is sent. ``extra_body`` (not sent as a field) is
    merged into the body last: the escape hatch for fields the SDK does not know yet.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    model: str
    """The model id, e.g. ``"veo2"`` or ``"google/veo-3.1-t2v"``."""
    prompt: str = Field(min_length=1, max_length=20_000)
    """The text description of the scene, subject or action to generate."""
    extra_body: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)
    """Extra JSON fields sent as-is (merged last); for API fields the SDK does not model yet."""

    #: Typical seconds from create to completion, used by the poll policy's first guess.
    typical_seconds: ClassVar[float] = 45.0

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the prompt must contain some text, not only white space")
        return v

    def to_body(self) -> dict[str, Any]:
        """The JSON body for the create call (``None`` fields left out, ``extra_body`` merged)."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"extra_body"})
        if self.extra_body:
            body.update(self.extra_body)
        return body

    def expected_seconds(self) -> float:
        """A rough guess of how long the generation takes, for the first poll."""
        return self.typical_seconds


class _DurationMixin(BaseModel):
    typical_seconds: ClassVar[float] = 45.0
    default_duration: ClassVar[int] = 5

    def expected_seconds(self) -> float:
        """Typical seconds to generate, scaled by the clip length asked for."""
        duration = getattr(self, "duration", None)
        base = type(self).typical_seconds
        default = type(self).default_duration
        if isinstance(duration, int) and default:
            return base * (0.6 + 0.4 * duration / default)
        return base


class Veo2TextToVideo(_DurationMixin, VideoRequest):
    """Veo2 text-to-video (``model="veo2"``); about 40 to 50 s for a 5 s clip."""

    model: Literal["veo2"] = "veo2"
    aspect_ratio: AspectRatio | None = None
    """``"16:9"`` or ``"9:16"``."""
    duration: Literal[5, 6, 7, 8] | None = None
    """Video length in seconds: 5, 6, 7 or 8 (server default 5)."""
    negative_prompt: str | None = None
    """What to avoid in the video."""
    seed: int | None = None
    """Same seed and parameters give similar results."""
    enhance_prompt: bool | None = None
    """Let the service rewrite the prompt for quality (server default true)."""

    typical_seconds: ClassVar[float] = 45.0
    default_duration: ClassVar[int] = 5


class Veo2ImageToVideo(Veo2TextToVideo):
    """Veo2 image-to-video (``model="veo2/image-to-video"``): animates ``image_url``."""

    model: Literal["veo2/image-to-video"] = "veo2/image-to-video"  # type: ignore[assignment]
    image_url: str = Field(min_length=1)
    """URL or base64 data URI of the first frame."""
    tail_image_url: str | None = None
    """URL or base64 data URI of the last frame."""


class Veo3TextToVideo(_DurationMixin, VideoRequest):
    """Veo 3 text-to-video: ``google/veo3`` and ``google/veo-3.0-fast``."""

    model: Literal["google/veo3", "google/veo-3.0-fast"] = "google/veo3"
    aspect_ratio: AspectRatio | None = None
    """``"16:9"`` or ``"9:16"``."""
    duration: Literal[4, 6, 8] | None = None
    """Video length in seconds: 4, 6 or 8 (server default 8)."""
    resolution: Literal["720P", "1080P"] | None = None
    """Output resolution (server default 720P)."""
    negative_prompt: str | None = None
    """What to avoid in the video."""
    seed: int | None = None
    """Same seed and parameters give similar results."""
    enhance_prompt: bool | None = None
    """Let the service rewrite the prompt (server default true)."""
    generate_audio: bool | None = None
    """Generate an audio track (server default true)."""

    typical_seconds: ClassVar[float] = 75.0
    default_duration: ClassVar[int] = 8


class Veo3ImageToVideo(Veo3TextToVideo):
    """Veo 3 image-to-video: ``google/veo-3.0-i2v`` and ``google/veo-3.0-i2v-fast``."""

    model: Literal["google/veo-3.0-i2v", "google/veo-3.0-i2v-fast"] = "google/veo-3.0-i2v"  # type: ignore[assignment]
    image_url: str = Field(min_length=1)
    """URL or base64 data URI of the first frame."""


class _Veo31Base(_DurationMixin, VideoRequest):
    aspect_ratio: AspectRatio | None = None
    """``"16:9"`` or ``"9:16"``."""
    duration: Literal[4, 6, 8] | None = None
    """Video length in seconds: 4, 6 or 8 (server default 8)."""
    resolution: Literal["720p", "1080p"] | None = None
    """Output resolution (server default 1080p)."""
    generate_audio: bool | None = None
    """Generate an audio track (server default true)."""
    provider: str | None = None
    """Provider routing override: ``google``, ``fal`` or ``auto`` (default)."""

    typical_seconds: ClassVar[float] = 75.0
    default_duration: ClassVar[int] = 8


class Veo31TextToVideo(_Veo31Base):
    """Veo 3.1 text-to-video: ``google/veo-3.1-t2v`` and ``google/veo-3.1-t2v-fast``."""

    model: Literal["google/veo-3.1-t2v", "google/veo-3.1-t2v-fast"] = "google/veo-3.1-t2v"
    seed: int | None = None
    """Same seed and parameters give similar results."""
    auto_fix: bool | None = None
    """Rewrite prompts that fail content policy (server default true)."""
    negative_prompt: str | None = None
    """What to avoid in the video."""
    enhance_prompt: bool | None = None
    """Let the service rewrite the prompt (server default true)."""


class Veo31ImageToVideo(_Veo31Base):
    """Veo 3.1 image-to-video: ``google/veo-3.1-i2v`` and ``google/veo-3.1-i2v-fast``."""

    model: Literal["google/veo-3.1-i2v", "google/veo-3.1-i2v-fast"] = "google/veo-3.1-i2v"
    image_url: str = Field(min_length=1)
    """URL of the image to animate (720p or more)."""


class Veo31FirstLastFrame(_Veo31Base):
    """Veo 3.1 first/last frame: ``google/veo-3.1-first-last-image-to-video[-fast]``."""

    model: Literal[
        "google/veo-3.1-first-last-image-to-video",
        "google/veo-3.1-first-last-image-to-video-fast",
    ] = "google/veo-3.1-first-last-image-to-video"
    image_url: str = Field(min_length=1)
    """URL of the first frame."""
    last_image_url: str = Field(min_length=1)
    """URL or base64 data URI of the last frame."""


class Veo31ReferenceToVideo(_DurationMixin, VideoRequest):
    """Veo 3.1 reference-to-video (``google/veo-3.1-reference-to-video``)."""

    model: Literal["google/veo-3.1-reference-to-video"] = "google/veo-3.1-reference-to-video"
    image_urls: list[str] = Field(min_length=1)
    """Reference image URLs (720p or more)."""
    duration: Literal[8] | None = None
    """Video length in seconds: only 8."""
    resolution: Literal["720p", "1080p"] | None = None
    """Output resolution (server default 1080p)."""
    generate_audio: bool | None = None
    """Generate an audio track (server default true)."""
    provider: str | None = None
    """Provider routing override: ``google``, ``fal`` or ``auto`` (default)."""

    typical_seconds: ClassVar[float] = 75.0
    default_duration: ClassVar[int] = 8


class Veo31ExtendVideo(_DurationMixin, VideoRequest):
    """Veo 3.1 extend-video: ``google/veo3-1-extend-video`` and its ``-fast-`` variant."""

    model: Literal["google/veo3-1-extend-video", "google/veo3-1-fast-extend-video"] = (
        "google/veo3-1-extend-video"
    )
    video_url: str = Field(min_length=1)
    """HTTPS URL or data URI of the video to extend."""
    aspect_ratio: Literal["auto", "16:9", "9:16"] | None = None
    """``"auto"``, ``"16:9"`` or ``"9:16"``."""
    duration: Literal[7] | None = None
    """Video length in seconds: only 7."""
    resolution: Literal["720p"] | None = None
    """Output resolution: only 720p."""
    generate_audio: bool | None = None
    """Generate an audio track (server default true)."""
    auto_fix: bool | None = None
    """Rewrite prompts that fail content policy (server default false)."""
    provider: str | None = None
    """Provider routing override: ``google``, ``fal`` or ``auto`` (default)."""

    typical_seconds: ClassVar[float] = 70.0
    default_duration: ClassVar[int] = 7


class Veo31LitePreview(_Veo31Base):
    """Veo 3.1 Lite preview (``google/veo-3-1-lite-generate-preview``), text or image to video."""

    model: Literal["google/veo-3-1-lite-generate-preview"] = "google/veo-3-1-lite-generate-preview"
    image_url: str | None = None
    """Optional first frame."""
    last_image_url: str | None = None
    """Optional last frame; then the duration can only be 8."""

    typical_seconds: ClassVar[float] = 50.0

    @model_validator(mode="after")
    def _last_frame_needs_8s(self) -> Veo31LitePreview:
        if self.last_image_url is not None and self.duration not in (None, 8):
            raise ValueError("duration must be 8 when last_image_url is set")
        return self


class Veo31LiteGenerate001(_DurationMixin, VideoRequest):
    """Veo 3.1 Lite (``veo-3.1-lite-generate-001``), text or image to video."""

    model: Literal["veo-3.1-lite-generate-001"] = "veo-3.1-lite-generate-001"
    image_url: str | None = None
    """Optional first frame."""
    last_image_url: str | None = None
    """Optional last frame."""
    aspect_ratio: AspectRatio | None = None
    """``"16:9"`` or ``"9:16"``."""
    resolution: Literal["720P", "1080P"] | None = None
    """Output resolution (server default 720P)."""
    duration: Literal[4, 6, 8] | None = None
    """Video length in seconds: 4, 6 or 8 (server default 8)."""
    generate_audio: bool | None = None
    """Generate an audio track (server default true)."""
    person_generation: Literal["dont_allow", "allow_adult"] | None = None
    """Whether people may be generated (server default allow_adult)."""

    typical_seconds: ClassVar[float] = 50.0
    default_duration: ClassVar[int] = 8


class CustomVideoRequest(VideoRequest):
    """Escape hatch: any model id and any extra fields, sent as given, validated by the server.

    ``CustomVideoRequest(model="google/veo-4", prompt="...", new_field=1)``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body: every field given, ``extra_body`` merged last."""
        body = super().to_body()
        if self.model_extra:
            body.update({k: v for k, v in self.model_extra.items() if v is not None})
            if self.extra_body:
                body.update(self.extra_body)
        return body


def _models_of(cls: type[VideoRequest]) -> tuple[str, ...]:
    annotation = cls.model_fields["model"].annotation
    return tuple(getattr(annotation, "__args__", ()))


#: Every model id the SDK knows, mapped to its request class.
MODEL_REQUESTS: Mapping[str, type[VideoRequest]] = {
    model_id: cls
    for cls in (
        Veo2TextToVideo,
        Veo2ImageToVideo,
        Veo3TextToVideo,
        Veo3ImageToVideo,
        Veo31TextToVideo,
        Veo31ImageToVideo,
        Veo31FirstLastFrame,
        Veo31ReferenceToVideo,
        Veo31ExtendVideo,
        Veo31LitePreview,
        Veo31LiteGenerate001,
    )
    for model_id in _models_of(cls)
}


def _allowed_values(cls: type[BaseModel], field: str) -> list[Any] | None:
    info = cls.model_fields.get(field)
    if info is None:
        return None
    args: list[Any] = []
    stack: list[Any] = [info.annotation]
    while stack:
        ann = stack.pop()
        origin = getattr(ann, "__origin__", None)
        if origin is Literal:
            args.extend(ann.__args__)
        elif hasattr(ann, "__args__"):
            stack.extend(ann.__args__)
    return args or None


def validation_error_from_pydantic(
    exc: ValidationError, cls: type[BaseModel], model_id: str
) -> RequestValidationError:
    """Turn a pydantic ``ValidationError`` into a :class:`RequestValidationError`."""
    errors: list[dict[str, Any]] = []
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        message = str(err["msg"]).removeprefix("Value error, ")
        entry: dict[str, Any] = {"field": loc, "message": message}
        if err["type"] == "extra_forbidden":
            entry["message"] = (
                f"'{loc}' is not a field of model {model_id!r}; "
                "use extra_body={...} or CustomVideoRequest to send it anyway"
            )
        else:
            allowed = _allowed_values(cls, str(err["loc"][0])) if err["loc"] else None
            if allowed:
                entry["allowed"] = allowed
            if "input" in err and err["type"] != "missing":
                entry["received"] = _short(err["input"])
        errors.append(entry)
        text = f"{loc}: {entry['message']}"
        if "received" in entry:
            text += f" (got {entry['received']!r})"
        if "allowed" in entry:
            text += f"; allowed: {', '.join(repr(a) for a in entry['allowed'])}"
        parts.append(text)
    summary = f"invalid request for model {model_id!r}: " + "; ".join(parts)
    return RequestValidationError(summary, errors=errors)


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return value


def build_request(
    prompt: str | None = None,
    *,
    model: str = "veo2",
    extra_body: Mapping[str, Any] | None = None,
    **fields: Any,
) -> VideoRequest:
    """Validate ``prompt`` and keyword fields for ``model`` and return the request model.

    Raises :class:`RequestValidationError` naming each bad field and its allowed values. An
    unknown model id is an error too (a typo would cost money); use :class:`CustomVideoRequest`
    to send a model the SDK does not know yet.
    """
    data: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if prompt is not None:
        data["prompt"] = prompt
    if extra_body:
        data["extra_body"] = dict(extra_body)
    cls = MODEL_REQUESTS.get(model)
    if cls is None:
        known = ", ".join(sorted(MODEL_REQUESTS))
        raise RequestValidationError(
            f"unknown model {model!r}; known models: {known}. "
            "To send a model the SDK does not know yet, use "
            "CustomVideoRequest(model=..., prompt=..., ...)",
            errors=[
                {"field": "model", "message": "unknown model", "allowed": sorted(MODEL_REQUESTS)}
            ],
        )
    data["model"] = model
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error_from_pydantic(exc, cls, model) from None


def coerce_request(value: VideoRequest | str | Mapping[str, Any]) -> VideoRequest:
    """Accept a request model, a bare prompt (veo2), or a mapping of fields (``model`` optional)."""
    if isinstance(value, VideoRequest):
        return value
    if isinstance(value, str):
        return build_request(value)
    if isinstance(value, Mapping):
        fields = dict(value)
        model = fields.pop("model", "veo2")
        if not isinstance(model, str):
            raise RequestValidationError(
                "model must be a string", errors=[{"field": "model", "message": "not a string"}]
            )
        prompt = fields.pop("prompt", None)
        return build_request(prompt, model=model, **fields)
    raise TypeError(
        "expected a VideoRequest, a prompt string or a mapping of fields, "
        f"got {type(value).__name__}"
    )
