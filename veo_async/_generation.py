"""The ``Generation`` response and its status.

Responses are parsed leniently: unknown fields are kept, unknown status strings become
pseudo-members of :class:`GenerationStatus`, and ``error`` may be an object or a plain string.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Generation", "GenerationErrorInfo", "GenerationStatus", "Usage", "VideoFile"]


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
