"""The error tree of veo-async.

Every error the SDK raises on purpose derives from :class:`VeoError`::

    VeoError
    ├── ConfigurationError            bad client settings (missing key, plain HTTP to a remote host)
    ├── RequestValidationError        a request failed local validation; nothing was sent
    ├── APIError                      the API could not be talked to, or answered with an error
    │   ├── APIStatusError            an HTTP error status (carries status_code, request_id, body)
    │   │   ├── BadRequestError              400 (the server's Expected/Received detail in .details)
    │   │   ├── AuthenticationError          401 missing or invalid key
    │   │   ├── PermissionDeniedError        403 not allowed, e.g. out of credits
    │   │   ├── NotFoundError                404 unknown path or generation id
    │   │   ├── RateLimitError               429 (carries retry_after)
    │   │   └── ServerError                  5xx
    │   ├── APIConnectionError        the connection failed or broke
    │   │   └── APITimeoutError       connect / read / write / pool timeout
    │   └── InvalidResponseError      a 2xx whose body is not a generation (HTML, broken JSON)
    ├── CreateOutcomeUnknownError     a create may or may not have started a billed generation
    ├── GenerationFailedError         the generation ended with status ``error`` (or with no video)
    ├── WaitTimeoutError              waiting ran out of time; carries the id so you can resume
    └── DownloadError                 the video could not be downloaded safely
        └── DownloadIntegrityError    the body was truncated, too long, or of the wrong type

None of these ever contains the API key: messages are built from status codes, paths, ids and
server bodies only, never from request headers, and every server-provided string (message, body,
request id, the text of a low-level error) is passed through :func:`redact` before it is stored,
so a server that echoes the key (or any ``Bearer`` token) cannot put it into an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Generation, VideoRequest

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "CreateOutcomeUnknownError",
    "DownloadError",
    "DownloadIntegrityError",
    "GenerationFailedError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestValidationError",
    "ServerError",
    "VeoError",
    "WaitTimeoutError",
]


REDACTED = "[redacted]"
#: A ``Bearer`` credential in any server-provided text (also URL- or form-encoded spaces).
_BEARER = re.compile(r"(?i)\b(bearer)(?:\s+|%20|\+)[^\s\"',;&<>}\]\)]+")
#: Keys shorter than this are not searched for as plain text (they would match ordinary words);
#: a ``Bearer`` value is redacted whatever its length.
MIN_REDACTED_SECRET = 8


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Return ``value`` with every secret and every ``Bearer`` value replaced by ``[redacted]``.

    Strings are scrubbed; mappings, lists and tuples are scrubbed recursively (keys too);
    anything else is returned unchanged. ``secrets`` shorter than 8 characters are ignored.
    """
    keys = [s for s in secrets if s and len(s) >= MIN_REDACTED_SECRET]
    return _redact(value, keys, 0)


def _redact(value: Any, keys: list[str], depth: int) -> Any:
    if isinstance(value, str):
        for key in keys:
            if key in value:
                value = value.replace(key, REDACTED)
        if "earer" in value or "EARER" in value:
            value = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        return value
    if depth > 64:  # a body this deep is not a generation; keep nothing of it
        return REDACTED
    if isinstance(value, Mapping):
        return {_redact(k, keys, depth + 1): _redact(v, keys, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, keys, depth + 1) for v in value)
    return value


def scrub_error(error: VeoError, secrets: Iterable[str] = ()) -> VeoError:
    """Redact ``secrets`` and ``Bearer`` values from an error's text and stored server data.

    Changes ``error`` in place (message, args, ``body``, ``server_message``, ``request_id``,
    ``url``) and returns it. Used where a response becomes an error, before anyone sees it.
    """
    keys = [s for s in secrets if s and len(s) >= MIN_REDACTED_SECRET]
    error.message = _redact(error.message, keys, 0)
    error.args = tuple(_redact(a, keys, 0) for a in error.args)
    for name in ("body", "server_message", "request_id", "url"):
        if name in vars(error):
            setattr(error, name, _redact(getattr(error, name), keys, 0))
    return error


class VeoError(Exception):
    """Root of every error veo-async raises on purpose.

    ``request_id`` is the server's request id when the error came from a response that had one.
    """

    request_id: str | None = None

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if request_id is not None:
            self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id: {self.request_id})"
        return self.message


class ConfigurationError(VeoError, ValueError):
    """The client was configured in a way that cannot work (missing key, insecure URL, ...)."""


class RequestValidationError(VeoError, ValueError):
    """A request failed local validation. Nothing was sent and nothing was spent.

    ``errors`` holds one entry per problem: ``{"field": ..., "message": ..., "allowed": [...]}``
    (``allowed`` only where the field takes a closed set of values).
    """

    def __init__(self, message: str, *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]

    @property
    def fields(self) -> list[str]:
        """The names of the fields that failed validation."""
        return [str(e.get("field", "")) for e in self.errors]


class APIError(VeoError):
    """The API could not be reached, or it answered with something other than success."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.method = method
        self.url = url


class APIStatusError(APIError):
    """The API answered with an HTTP error status.

    ``status_code`` is the HTTP status, ``body`` the parsed JSON body (or the raw text, cut
    short), ``server_message`` the server's ``message`` field when there was one.
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id, method=method, url=url)
        self.status_code = status_code
        self.body = body
        self.server_message: str | None = None
        if isinstance(body, Mapping):
            msg = body.get("message")
            if isinstance(msg, str):
                self.server_message = msg


class BadRequestError(APIStatusError):
    """400: the server rejected the request body. ``details`` holds its Expected/Received info."""

    @property
    def details(self) -> object:
        """The server's validation detail (everything in the body beside the standard fields)."""
        if isinstance(self.body, Mapping):
            return {
                k: v
                for k, v in self.body.items()
                if k not in {"message", "path", "requestId", "statusCode", "timestamp"}
            }
        return self.body


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid. Set ``AIMLAPI_KEY`` or pass ``api_key=``."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but not allowed to do this, for example it is out of credits."""


class NotFoundError(APIStatusError):
    """404: unknown path or unknown generation id (for example after a server-side restart)."""


class RateLimitError(APIStatusError):
    """429: rate or concurrency limit hit. ``retry_after`` is the server's wait in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: server or upstream trouble. Polls are retried; creates may be of unknown outcome."""


class APIConnectionError(APIError):
    """The connection could not be made, or broke before a full response arrived.

    ``request_sent`` tells whether the request may have reached the server: ``False`` only when
    the failure happened before anything was written (connect errors).
    """

    def __init__(self, message: str, *, request_sent: bool = True, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """A connect, read, write or pool timeout."""


class InvalidResponseError(APIError):
    """A success status whose body is not a valid generation (malformed JSON, an HTML page)."""

    def __init__(self, message: str, *, status_code: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status_code = status_code


class CreateOutcomeUnknownError(VeoError):
    """A create request may or may not have started a billed generation.

    Raised instead of retrying when the request may have reached the server but no usable
    answer came back (read timeout, connection lost after sending, an ambiguous 5xx, a broken
    body). Retrying could pay twice, and the API has no idempotency key and no way to list
    generations, so the SDK reports it instead. ``request`` is what was sent; ``__cause__`` is the
    underlying error. Resubmit only if paying twice is acceptable.
    """

    def __init__(
        self, message: str, *, request: VideoRequest | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.request = request


class GenerationFailedError(VeoError):
    """The generation reached status ``error``, or ``completed`` without a video URL."""

    def __init__(self, message: str, *, generation: Generation) -> None:
        super().__init__(message)
        self.generation = generation

    @property
    def generation_id(self) -> str:
        """The id of the failed generation."""
        return self.generation.id


class WaitTimeoutError(VeoError, TimeoutError):
    """Waiting for a generation ran out of time. The generation may still finish.

    Resume later with ``client.wait(err.generation_id)`` or ``client.as_completed([...])``.
    """

    def __init__(self, message: str, *, generation_id: str, last: Generation | None = None) -> None:
        super().__init__(message)
        self.generation_id = generation_id
        self.last = last


class DownloadError(VeoError):
    """The video could not be downloaded. ``url`` is the video URL (it never carries the key)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class DownloadIntegrityError(DownloadError):
    """The body was truncated, longer than announced or allowed, or of an unexpected type."""
