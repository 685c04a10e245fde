"""The API boundary: one exchange (send, read, parse) and the classification of its failures.

Every API request goes through :meth:`Exchange.send`: send, read the body (streamed, at most
``max_response_bytes``), parse, all under one wall-clock ``request_deadline``. Whatever goes
wrong in there (a transport error, a body that fails to decode, JSON too deep to parse, a
malformed reply the aiohttp transport raises its own exception for, the deadline, the size cap,
a 2xx without an id) comes out as a typed :class:`~veo_async.VeoError` with every
server-provided string redacted, never as a raw httpx/aiohttp/``RecursionError``. Whether such
a failure may be retried (and whether a create is then of unknown outcome) is decided by the
caller from the error's type and ``request_sent``.

The HTTP stack's own DEBUG loggers print response headers verbatim; :func:`redact_logs`
installs a filter that scrubs the keys of this process's clients from them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx
from pydantic import ValidationError

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    VeoError,
    redact,
    scrub_error,
)
from ._models import Generation
from ._retry import parse_retry_after

if TYPE_CHECKING:
    import aiohttp

    from ._transport import DirectAPI

__all__ = ["Exchange", "parse_reply", "redact_logs"]

logger = logging.getLogger("veo_async")

_CLOSE_GRACE = 2.0
#: ``asyncio.timeout`` (Python 3.11+), the direct path's deadline; ``None`` on 3.10.
_asyncio_timeout: Any = getattr(asyncio, "timeout", None)
_STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


@dataclass(frozen=True)
class Exchange:
    """How one API request is sent and read: its deadline, body cap, timeouts and secrets."""

    deadline: float | None
    """Wall-clock seconds for the whole exchange (``None``: no deadline)."""
    max_bytes: int
    """The largest reply body read (after decoding)."""
    timeout: httpx.Timeout
    """httpx's per-operation timeouts."""
    secrets: tuple[str, ...] = field(repr=False)
    """Strings redacted from every server-provided text (the API key); never in a repr."""

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str,
        url: httpx.URL,
        *,
        headers: Callable[[], Mapping[str, str]],
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        direct: DirectAPI | None = None,
    ) -> tuple[int, Generation]:
        """One exchange: returns ``(status code, generation)`` or raises a redacted VeoError.

        ``headers`` is a callable so the Authorization header is never a local variable of a
        frame that a traceback with locals could print. ``direct``: the aiohttp path of
        :mod:`veo_async._transport`, taken for a request without a body (a status request);
        it behaves as the httpx path in every respect but CPU.

        Nothing else comes out (cancellation passes through; a closed client or a body that
        cannot be encoded raise before anything is sent).
        """
        if http.is_closed:  # (closed mid-retry): nothing is sent, so nothing is uncertain
            raise RuntimeError("this AsyncVeoClient (or its HTTP client) is closed")
        if direct is not None and json_body is None and not url.query:
            return await self._send_direct(direct, method, url, headers, params)
        request = http.build_request(
            method, url, json=json_body, params=params, headers=headers(), timeout=self.timeout
        )
        error: VeoError
        try:
            with anyio.move_on_after(self.deadline) as scope:
                response = await http.send(request, stream=True, follow_redirects=False)
                try:
                    content = await self.read_body(response, method, url)
                finally:
                    await _close_response(response)
                return response.status_code, parse_reply(response, method, content)
            assert scope.cancelled_caught
            error = self._deadline_passed(method, url)
        except VeoError as exc:
            error = exc
        except Exception as exc:  # the boundary: every failure becomes typed
            error = self.classify(exc, method, url)
        raise scrub_error(error, self.secrets)

    def _deadline_passed(self, method: str, url: httpx.URL) -> APITimeoutError:
        """The error of a request that had no complete reply within ``request_deadline``."""
        return APITimeoutError(
            f"{method} {url.path}: no complete reply within request_deadline="
            f"{self.deadline:g} s (the request may have been sent)",
            request_sent=True,
            method=method,
            url=str(url),
        )

    async def _send_direct(
        self,
        direct: DirectAPI,
        method: str,
        url: httpx.URL,
        headers: Callable[[], Mapping[str, str]],
        params: Mapping[str, str] | None,
    ) -> tuple[int, Generation]:
        """:meth:`send` on the direct aiohttp path: the same deadline, cap, parsing and
        typed errors (aiohttp's exceptions mapped as httpx-aiohttp maps them).

        The direct path only runs on asyncio, so the deadline is asyncio's own ``timeout``
        (Python 3.11+; an anyio cancel scope on 3.10): the same cancellation, for less CPU.
        """
        error: VeoError
        try:
            if _asyncio_timeout is None:  # Python 3.10
                with anyio.move_on_after(self.deadline):
                    return await self._exchange_direct(direct, method, url, headers, params)
            else:
                deadline = _asyncio_timeout(self.deadline)
                try:
                    async with deadline:
                        return await self._exchange_direct(direct, method, url, headers, params)
                except TimeoutError:
                    if not deadline.expired():
                        raise
            error = self._deadline_passed(method, url)
        except VeoError as exc:
            error = exc
        except Exception as exc:  # the boundary: every failure becomes typed
            error = self.classify(exc, method, url)
        raise scrub_error(error, self.secrets)

    async def _exchange_direct(
        self,
        direct: DirectAPI,
        method: str,
        url: httpx.URL,
        headers: Callable[[], Mapping[str, str]],
        params: Mapping[str, str] | None,
    ) -> tuple[int, Generation]:
        """Send, read (capped) and parse one reply on the direct path (no deadline here)."""
        try:
            reply = await direct.request(method, url, params, headers(), self.timeout)
            try:
                content = await self._read_direct(reply, method, url)
            except BaseException:
                reply.close()  # half-read: the connection is not reused
                raise
            reply.release()
        except VeoError:
            raise
        except Exception as exc:
            # what httpx-aiohttp's transport raises for it: the mapped httpx error (from exc),
            # or exc itself; mapped only on failure (a context manager per request costs CPU)
            from httpx_aiohttp.transport import map_aiohttp_exceptions

            with map_aiohttp_exceptions():
                raise exc
        status = reply.status
        return status, _parse(status, _JoinedHeaders(reply), url.path, method, content)

    async def _read_direct(
        self, reply: aiohttp.ClientResponse, method: str, url: httpx.URL
    ) -> bytes:
        """:meth:`read_body` for an aiohttp reply: decoded as httpx decodes, capped alike."""
        cap = self.max_bytes
        headers = _JoinedHeaders(reply)
        declared = (headers.get("content-length") or "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(reply.status, headers, method, url, f"announced {declared} bytes")
        decoder: Any = None
        if "content-encoding" in reply.headers:
            # httpx's decoders (gzip, deflate, br, zstd as installed), chosen as httpx does
            decoder = httpx.Response(reply.status, headers=reply.raw_headers)._get_content_decoder()
        body = bytearray()
        stream = reply.content
        while not stream.at_eof():  # (a small reply is whole after one read: no second await)
            chunk = await stream.readany()
            if not chunk:
                break
            body += decoder.decode(chunk) if decoder is not None else chunk
            if len(body) > cap:
                raise self._too_large(reply.status, headers, method, url, "the body went on")
        if decoder is not None:
            body += decoder.flush()
            if len(body) > cap:
                raise self._too_large(reply.status, headers, method, url, "the body went on")
        return bytes(body)

    async def read_body(self, response: httpx.Response, method: str, url: httpx.URL) -> bytes:
        """The decoded body, refusing (and not reading) more than ``max_bytes``.

        Reads raw bytes and decodes them here, so that a decoding error or the cap stops the
        read in this frame; the half-read stream is then closed and drained, leaving no
        suspended async generator behind (trio warns about those).
        """
        cap = self.max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(
                response.status_code, response.headers, method, url, f"announced {declared} bytes"
            )
        try:
            loaded = response.content  # a transport may hand back a body already read
        except httpx.ResponseNotRead:
            pass
        else:
            if len(loaded) > cap:
                raise self._too_large(
                    response.status_code,
                    response.headers,
                    method,
                    url,
                    f"a body of {len(loaded)} bytes",
                )
            return loaded
        decoder = response._get_content_decoder()
        body = bytearray()
        raw = response.aiter_raw()
        try:
            async for chunk in raw:
                body += decoder.decode(chunk)
                if len(body) > cap:
                    raise self._too_large(
                        response.status_code, response.headers, method, url, "the body went on"
                    )
            body += decoder.flush()
        except BaseException:
            await _close_response(response)
            await _drain(raw)
            raise
        return bytes(body)

    def _too_large(
        self, status: int, headers: _Headers, method: str, url: httpx.URL, what: str
    ) -> InvalidResponseError:
        return InvalidResponseError(
            f"{method} {url.path} -> {status}: {what}, more than "
            f"max_response_bytes={self.max_bytes}; the reply was not read",
            status_code=status,
            request_id=headers.get("x-request-id"),
            method=method,
            url=url.path,
        )

    def classify(self, exc: Exception, method: str, url: httpx.URL) -> VeoError:
        """Map any non-SDK exception from one exchange to a typed error.

        The low-level exception is not chained: its frames' locals hold the request headers
        (the key) and its text may quote whatever the server sent. Its type and redacted text
        are in the message instead.
        """
        what = type(exc).__name__
        detail = redact(str(exc)[:200], self.secrets) or what
        error: VeoError
        if isinstance(exc, httpx.TransportError):
            not_sent = _request_not_sent(exc)
            cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
            phase = (
                "before the request was sent"
                if not_sent
                else "after the request may have been sent"
            )
            error = cls(
                f"{method} {url.path}: {what} {phase}: {detail}",
                request_sent=not not_sent,
                method=method,
                url=str(url.copy_with(query=None)),
            )
        elif isinstance(exc, (httpx.DecodingError, ValueError, RecursionError, MemoryError)):
            error = InvalidResponseError(
                f"{method} {url.path}: the reply could not be decoded or parsed ({what}: {detail})",
                method=method,
                url=url.path,
            )
        else:
            # e.g. aiohttp's own errors for a malformed status line, header or chunk
            not_sent = _aiohttp_connector_error(exc)
            phase = "before the request was sent" if not_sent else "reading the reply"
            error = APIConnectionError(
                f"{method} {url.path}: {what} {phase}: {detail}",
                request_sent=not not_sent,
                method=method,
                url=str(url.copy_with(query=None)),
            )
        error.__cause__ = None
        error.__suppress_context__ = True
        return error


# ---------------------------------------------------------------------------- parsing


class _Headers(Protocol):
    """What parsing reads from a reply's headers (httpx's ``Headers`` or
    :class:`_JoinedHeaders`)."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value of header ``key`` (several joined by ``", "``), else ``default``."""


class _JoinedHeaders:
    """An aiohttp reply's headers read as httpx reads them: repeated values joined by ``", "``."""

    __slots__ = ("_headers",)

    def __init__(self, reply: aiohttp.ClientResponse) -> None:
        self._headers = reply.headers

    def get(self, key: str, default: Any = None) -> Any:
        """The value of header ``key`` (several joined by ``", "``), else ``default``."""
        values = self._headers.getall(key, ())
        return ", ".join(values) if values else default


def parse_reply(response: httpx.Response, method: str, content: bytes | None = None) -> Generation:
    """Turn one reply into a generation or a typed error (``content``: the body read)."""
    if content is None:
        content = response.content
    return _parse(
        response.status_code, response.headers, response.request.url.path, method, content
    )


def _parse(status: int, headers: _Headers, path: str, method: str, content: bytes) -> Generation:
    """:func:`parse_reply` from the parts of a reply (whichever transport read it)."""
    request_id = headers.get("x-request-id")
    body: object
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        body = content[:500].decode("utf-8", "replace")
    if isinstance(body, Mapping) and isinstance(body.get("requestId"), str):
        request_id = request_id or str(body["requestId"])
    if 200 <= status < 300:
        return _generation(status, path, method, body, request_id)
    raise _status_error(status, headers, path, method, body, request_id)


def _generation(
    status: int, path: str, method: str, body: object, request_id: str | None
) -> Generation:
    """A 2xx body as a generation with a non-blank id, or InvalidResponseError."""

    def invalid(what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{method} {path} -> {status}, but {what}",
            status_code=status,
            request_id=request_id,
            method=method,
            url=path,
        )

    if not isinstance(body, Mapping):
        raise invalid(f"the body is not a JSON object: {str(body)[:120]!r}")
    try:
        generation = Generation.model_validate(body)
    except ValidationError as exc:
        raise invalid(
            f"the body is not a generation: {exc.error_count()} problem(s), "
            f"first: {exc.errors()[0]['msg']}"
        ) from None
    if not generation.id.strip():
        raise invalid("the generation id is blank")
    return generation


def _status_error(
    status: int,
    headers: _Headers,
    path: str,
    method: str,
    body: object,
    request_id: str | None,
) -> APIStatusError:
    """The typed error for a non-2xx reply."""
    common: dict[str, Any] = {
        "status_code": status,
        "body": body,
        "request_id": request_id,
        "method": method,
        "url": path,
    }
    if 300 <= status < 400:
        return APIStatusError(
            f"{method} {path} -> {status} redirect to "
            f"{headers.get('location', '?')!r}: API redirects are not followed so "
            "the key never leaves the API host; set base_url to the final address",
            **common,
        )
    server_msg = body.get("message") if isinstance(body, Mapping) else None
    text = server_msg if isinstance(server_msg, str) else str(body)[:200]
    message = f"{method} {path} -> {status}: {text}"
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIStatusError)
    if cls is RateLimitError:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return RateLimitError(message, retry_after=retry_after, **common)
    if cls is AuthenticationError:
        message += " (check AIMLAPI_KEY / api_key=)"
    return cls(message, **common)


# ---------------------------------------------------------------------------- transport facts


def _request_not_sent(exc: httpx.TransportError) -> bool:
    """True when the failure provably happened before the request was written."""
    if not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return False
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.split(".")[0] == "aiohttp":
        # httpx-aiohttp maps every aiohttp ClientConnectionError (server disconnects included)
        # to ConnectTimeout; only a connector error proves nothing was sent.
        return any(c.__name__ == "ClientConnectorError" for c in type(cause).__mro__)
    return True


def _aiohttp_connector_error(exc: BaseException) -> bool:
    """True for an aiohttp error raised while connecting (nothing was written)."""
    return type(exc).__module__.split(".")[0] == "aiohttp" and any(
        c.__name__ == "ClientConnectorError" for c in type(exc).__mro__
    )


async def _close_response(response: httpx.Response) -> None:
    """Close a (possibly half-read) response, shielded and bounded, never raising."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _CLOSE_GRACE
        try:
            await response.aclose()
        except Exception:  # the reply is abandoned either way
            logger.debug("closing an API response failed", exc_info=True)


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Finish a closed response's byte iterator (it ends or raises at once), shielded."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _CLOSE_GRACE
        try:
            async for _ in stream:
                pass
        except Exception:  # a closed stream raises a read error: that is the point
            pass


# ---------------------------------------------------------------------------- log redaction

#: Loggers of the HTTP stack that log response lines and headers verbatim at DEBUG.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.connection",
    "aiohttp.client",
)


class _RedactingFilter(logging.Filter):
    """Scrubs the keys of this process's clients and any ``Bearer`` value from log records."""

    def __init__(self) -> None:
        super().__init__("veo_async.redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is the logging module's business
            return True
        clean = redact(text, self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_LOG_FILTER = _RedactingFilter()


def redact_logs(secret: str) -> None:
    """Scrub ``secret`` from the HTTP stack's log records (for every client of the process)."""
    _LOG_FILTER.secrets.add(secret)
    for name in _HTTP_LOGGERS:
        target = logging.getLogger(name)
        if _LOG_FILTER not in target.filters:
            target.addFilter(_LOG_FILTER)
