"""Request models per model family, the ``Generation`` response and its status.

Request models mirror the provider's OpenAPI schemas (``POST /v2/video/generations``): each
known model id maps to one pydantic class whose fields, enums and required fields are the
provider's. Unknown fields are rejected on known models (a typo would otherwise be sent, and
paid for, silently); send new fields with ``extra_body=`` or use :class:`CustomVideoRequest`
for models the SDK does not know yet.

Responses are parsed leniently: unknown fields are kept, unknown status strings become
pseudo-members of :class:`GenerationStatus`, and ``error`` may be an object or a plain string.
"""

from __future__ import annotations

import enum
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
    "Generation",
    "GenerationErrorInfo",
    "GenerationStatus",
    "MODEL_REQUESTS",
    "Usage",
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
    "VideoFile",
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


# --------------------------------------------------------------------------- responses


class GenerationStatus(str, enum.Enum):
    """Status of a generation. Unknown strings from the server become pseudo-members.

    ``GenerationStatus("rendering")`` does not raise: it returns a member whose ``value`` is
    ``"rendering"`` and whose :attr:`is_known` is false. Unknown statuses count as in progress.
    """

    QUEUED = "queued"
    GENERATING = "generating"
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> GenerationStatus | None:
        if not isinstance(value, str):
            return None
        lowered = value.strip().lower()
        for member in cls:
            if member.value == lowered:
                return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = f"UNKNOWN({value})"
        pseudo._value_ = value
        return pseudo

    @property
    def is_known(self) -> bool:
        """Whether this is a status the SDK knows (not a pseudo-member)."""
        return self._value_ in _KNOWN_STATUSES

    @property
    def is_terminal(self) -> bool:
        """``completed`` or ``error``: the generation will not change any more."""
        return self in (GenerationStatus.COMPLETED, GenerationStatus.ERROR)

    def __str__(self) -> str:
        return str(self._value_)


_KNOWN_STATUSES = frozenset(m.value for m in GenerationStatus.__members__.values())


class VideoFile(BaseModel):
    """The ``video`` object of a completed generation."""

    model_config = ConfigDict(extra="allow")

    url: str | None = None
    """Where the MP4 can be downloaded (a CDN that needs no API key)."""
    duration: float | None = None
    """Video length in seconds, when the server says."""


class GenerationErrorInfo(BaseModel):
    """The ``error`` object of a failed generation."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    """Error class name given by the server."""
    message: str | None = None
    """Human-readable reason."""


class Usage(BaseModel):
    """``meta.usage``: what the generation cost."""

    model_config = ConfigDict(extra="allow")

    credits_used: float | None = None
    """Credits charged."""
    tokens_used: float | None = None
    """Older name for ``credits_used``."""


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    usage: Usage | None = None


class Generation(BaseModel):
    """A generation as returned by create and poll. Unknown fields are kept.

    ``status`` is a :class:`GenerationStatus` (unknown strings kept); ``video_url``,
    ``credits_used``, ``error_message``, ``is_terminal`` and ``succeeded`` are conveniences.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    """The generation id."""
    status: GenerationStatus
    """Current status."""
    video: VideoFile | None = None
    """The video, once completed."""
    error: GenerationErrorInfo | str | None = None
    """Why it failed: an object, or a plain string from older servers."""
    meta: _Meta | None = None
    """Extra details, including ``usage``."""
    duration: float | None = None
    """Older schema: the video length in seconds."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("error", mode="before")
    @classmethod
    def _error_shape(cls, v: object) -> object:
        if v is None or isinstance(v, (str, Mapping, GenerationErrorInfo)):
            return v
        return str(v)

    @property
    def video_url(self) -> str | None:
        """The video URL, or ``None`` until completed."""
        return self.video.url if self.video is not None else None

    @property
    def credits_used(self) -> float | None:
        """Credits charged (``credits_used``, or the older ``tokens_used``)."""
        usage = self.meta.usage if self.meta is not None else None
        if usage is None:
            return None
        return usage.credits_used if usage.credits_used is not None else usage.tokens_used

    @property
    def error_message(self) -> str | None:
        """The failure reason as text, whatever shape the server used."""
        if self.error is None:
            return None
        if isinstance(self.error, str):
            return self.error
        parts = [p for p in (self.error.name, self.error.message) if p]
        return ": ".join(parts) if parts else "unknown error"

    @property
    def is_terminal(self) -> bool:
        """Whether the status is final (``completed`` or ``error``)."""
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        """``completed`` with a video URL."""
        return self.status is GenerationStatus.COMPLETED and bool(self.video_url)

    @property
    def failed(self) -> bool:
        """``error``, or ``completed`` without a video URL."""
        return self.status is GenerationStatus.ERROR or (
            self.status is GenerationStatus.COMPLETED and not self.video_url
        )

    def _repr_html_(self) -> str:
        """Jupyter display: the video player when completed, and a small status table.

        Every value is HTML-escaped; only an ``http(s)`` URL becomes a ``<video>`` source.
        A generation never holds the API key, so none can be shown.
        """
        from html import escape

        from ._pricing import format_credits

        rows: list[tuple[str, str]] = [("id", self.id), ("status", str(self.status))]
        if self.credits_used is not None:
            rows.append(("credits", format_credits(self.credits_used)))
        if self.error_message:
            rows.append(("error", self.error_message))
        url = self.video_url
        if url:
            rows.append(("video", url))
        table = "".join(
            f'<tr><th style="text-align:left;padding-right:1em">{escape(k)}</th>'
            f'<td style="text-align:left">{escape(v)}</td></tr>'
            for k, v in rows
        )
        html = f'<table class="veo-generation">{table}</table>'
        if self.succeeded and url and url.lower().startswith(("https://", "http://")):
            src = escape(url, quote=True)
            html = (
                f'<video controls preload="metadata" src="{src}" '
                f'style="max-width:100%;width:480px"></video>' + html
            )
        return f"<div>{html}</div>"
