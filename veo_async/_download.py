"""Streamed, atomic, credential-free video downloads, hardened against hostile hosts.

The body is streamed into a temporary file in the target's folder, hashed on the way, checked
against ``Content-Length``, the size cap and its first bytes, flushed to disk, then moved into
place: with ``os.link`` (which fails if the target exists) unless overwriting was asked for,
with ``os.replace`` otherwise. A failed or interrupted download leaves no file behind, neither
the target nor the temporary ``.<name>.<hex>.part``.

What the video host gets and what it may send back:

* **No credentials.** The API key never goes with a download: a default ``Authorization``
  header on the HTTP client is removed. To any host other than the API host, the request also
  goes without the HTTP client's ``auth=`` (``httpx.BasicAuth`` or any ``httpx.Auth``) and
  without default ``Cookie`` / ``Proxy-Authorization`` headers. Redirects are followed here,
  hop by hop (at most ten), so every hop gets the same treatment.
* **No compression asked for.** The request says ``Accept-Encoding: identity``. A host that
  compresses anyway (``gzip``, ``x-gzip``, ``deflate``) is decoded here; any other encoding is
  refused. ``Content-Length`` is checked against the bytes on the wire, the size cap against
  the decoded bytes written to disk (and a compressed body may not be much larger than the
  cap either).
* **Exactly the announced length.** A body shorter than ``Content-Length`` is a truncated
  download (retried); one longer than it is refused, on the httpx transport (bytes seen past
  the end of the body) and on the aiohttp transport (its parser error) alike.
* **A video, not an error page.** A type other than ``video/*`` or a generic binary type is
  refused; so is a body that starts like HTML, XML, JSON or gzip data whatever its type; and a
  body with no or a generic type must start like an MP4/QuickTime file (a box such as
  ``ftyp`` at offset 4) or a WebM/Matroska file (the EBML magic).

Every failure is a :class:`~veo_async.DownloadError` (whatever the transport raised is chained
as its ``__cause__``), so a batch can record it as that job's failure and go on. Transient ones
(connection errors, timeouts, 5xx and 429 answers, truncated or empty bodies) are retried
first, following the client's :class:`~veo_async.RetryConfig`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import sys
import unicodedata
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from . import _timing
from ._exceptions import DownloadError, DownloadIntegrityError
from ._retry import RetryConfig, backoff_delay

__all__ = [
    "DownloadTargetExistsError",
    "DownloadedVideo",
    "download_video",
    "safe_filename",
    "url_file_stem",
]

logger = logging.getLogger("veo_async")

#: Types taken at their word (the body must still not look like markup, JSON or gzip).
_VIDEO_TYPES = ("video/", "application/mp4")
#: Types that say nothing: the body must start like a video container.
_GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/x-binary",
        "application/download",
        "application/x-download",
        "application/force-download",
        "application/unknown",
    }
)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10
#: Request headers that carry a credential of the HTTP client's, not meant for a video host.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
#: How many decoded bytes are looked at before the first one is written.
_SNIFF_BYTES = 512
#: Decoded bytes produced per step when inflating (a small compressed chunk can be a bomb).
_INFLATE_STEP = 256 * 1024
#: ISO base media (MP4, QuickTime, 3GP) boxes a file may start with, found at offset 4.
_ISO_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"sidx", b"moof"}
)
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)


class DownloadTargetExistsError(DownloadError, FileExistsError):
    """The target file exists and ``overwrite=True`` was not passed; nothing was downloaded.

    A :class:`~veo_async.DownloadError` (so a batch records it as that job's failure) and a
    ``FileExistsError`` (so code written against the standard library keeps working).
    """


@dataclass(frozen=True)
class DownloadedVideo:
    """A finished download: where it is, how big, its SHA-256, and where it came from."""

    path: Path
    """The final file."""
    size: int
    """Bytes written (after decoding any ``Content-Encoding``)."""
    sha256: str
    """Hex SHA-256 of the file."""
    url: str
    """The video URL it was downloaded from."""


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(stem: str, *, suffix: str = ".mp4", max_length: int = 80) -> str:
    """A file name built from untrusted text (a prompt, an id): no separators, no dot-files.

    Keeps letters, digits, ``.``, ``_`` and ``-``; everything else becomes ``-``; never empty,
    never ``.``/``..``, never starts with a dot, at most ``max_length`` characters.
    """
    text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("-", text).strip("-._")
    text = re.sub(r"-{2,}", "-", text)[:max_length].rstrip("-._")
    if not text:
        text = "video"
    return text + suffix


def url_file_stem(url: str) -> str:
    """The stem of the last path segment of ``url`` (``"video"`` when it has none).

    Never raises, whatever the URL: an unparsable one is refused later, by the download.
    """
    try:
        return Path(httpx.URL(url).path).stem or "video"
    except Exception:
        return "video"


async def download_video(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    overwrite: bool,
    max_bytes: int,
    timeout: httpx.Timeout,
    retry: RetryConfig,
    api_host: str | None = None,
    time_scale: float = 1.0,
) -> DownloadedVideo:
    """Download ``url`` to ``target`` safely, retrying transient failures; see module doc.

    ``api_host`` is the API's host: only a download from that very host may carry the HTTP
    client's ``auth`` and cookies (never an ``Authorization`` header of its own). Raises
    :class:`~veo_async.DownloadError` (or a subclass) for every failure, never a raw transport
    or file-system error; cancellation passes through.
    """
    target = Path(target)
    try:
        return await _download_with_retries(
            http,
            url,
            target,
            overwrite=overwrite,
            max_bytes=max_bytes,
            timeout=timeout,
            retry=retry,
            api_host=api_host,
            time_scale=time_scale,
        )
    except DownloadError:
        raise
    except Exception as exc:  # the one place a stray error becomes a typed one
        error, _ = _classify(exc, url, target.parent)
        raise error from exc


async def _download_with_retries(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    overwrite: bool,
    max_bytes: int,
    timeout: httpx.Timeout,
    retry: RetryConfig,
    api_host: str | None,
    time_scale: float,
) -> DownloadedVideo:
    parsed = _parse_url(url, url)
    if not overwrite and await anyio.Path(target).exists():
        raise DownloadTargetExistsError(
            f"{target} exists; pass overwrite=True to replace it", url=url
        )
    folder = target.parent
    try:
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, folder, url, "create the folder") from exc
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _download_once(
                http,
                parsed,
                url,
                target,
                overwrite=overwrite,
                max_bytes=max_bytes,
                timeout=timeout,
                api_host=api_host,
            )
        except _Transient as exc:
            error: DownloadError = exc.error
            cause = exc.__cause__
        except DownloadError:
            raise
        except Exception as exc:
            error, transient = _classify(exc, url, folder)
            if not transient:
                raise error from exc
            if attempt >= retry.max_attempts:
                raise type(error)(
                    f"download failed after {attempt} attempts: {error}", url=url
                ) from exc
            cause = exc
        if attempt >= retry.max_attempts:
            raise error from cause
        logger.debug("download attempt %d failed: %s", attempt, error)
        await _timing.sleep(backoff_delay(attempt, retry) * time_scale)


class _Transient(Exception):
    """A failure worth another attempt; carries the error to raise when attempts run out."""

    def __init__(self, error: DownloadError) -> None:
        super().__init__(str(error))
        self.error = error


# ---------------------------------------------------------------------------- classification


def _aiohttp_error(exc: BaseException) -> str | None:
    """What kind of aiohttp error ``exc`` is, or ``None`` for any other error.

    ``"past-end"``: bytes after the end of a ``Content-Length`` body; ``"parser"``: any other
    malformed status line, header or framing; ``"transient"``: connection, timeout or payload
    errors; ``"other"``: the rest. aiohttp is optional (the ``fast`` extra), so it is looked
    up, never imported here.
    """
    aiohttp: Any = sys.modules.get("aiohttp")
    if aiohttp is None:
        return None
    http_exceptions = sys.modules.get("aiohttp.http_exceptions")
    parser_errors: tuple[type[BaseException], ...] = (aiohttp.ClientResponseError,)
    if http_exceptions is not None:
        parser_errors += (http_exceptions.HttpProcessingError,)
    if isinstance(exc, parser_errors):
        # aiohttp names data after a complete "Connection: close" reply this way
        return "past-end" if "data after" in str(exc).lower() else "parser"
    if not isinstance(exc, aiohttp.ClientError):
        return None
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return "transient"
    return "other"


def _classify(exc: Exception, url: str, folder: Path) -> tuple[DownloadError, bool]:
    """The typed error for any failure of a download, and whether another attempt may help."""
    name = type(exc).__name__
    if isinstance(exc, DownloadError):
        return exc, False
    if isinstance(exc, _Transient):
        return exc.error, True
    if isinstance(exc, httpx.TooManyRedirects):
        return DownloadError(f"the video host redirects in a loop: {exc}", url=url), False
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return DownloadError(f"not a usable video URL ({name}: {exc})", url=url), False
    if isinstance(exc, httpx.TimeoutException):
        return DownloadError(f"the video host timed out ({name})", url=url), True
    if isinstance(exc, httpx.TransportError):
        return DownloadError(f"connection to the video host failed: {name}: {exc}", url=url), True
    if isinstance(exc, httpx.DecodingError):
        return DownloadIntegrityError(f"the video body could not be decoded: {exc}", url=url), False
    if isinstance(exc, httpx.HTTPError):
        return DownloadError(f"download failed: {name}: {exc}", url=url), False
    kind = _aiohttp_error(exc)
    if kind is not None:
        detail = _first_line(exc)
        if kind == "past-end":
            message = (
                "body longer than its Content-Length: the video host sent data past the end "
                f"({name}: {detail})"
            )
            return DownloadIntegrityError(message, url=url), False
        if kind == "parser":
            message = f"the video host sent a malformed reply ({name}: {detail})"
            return DownloadError(message, url=url), True
        return DownloadError(f"connection to the video host failed: {name}: {detail}", url=url), (
            kind == "transient"
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):  # (an OSError: checked first)
        return DownloadError(f"the video host timed out ({name})", url=url), True
    if isinstance(exc, ConnectionError):
        return DownloadError(f"connection to the video host failed: {name}: {exc}", url=url), True
    if isinstance(exc, FileExistsError):
        return DownloadTargetExistsError(str(exc), url=url), False
    if isinstance(exc, OSError):
        return _disk_error(exc, folder, url, "write the video"), False
    return DownloadError(f"download failed: {name}: {_first_line(exc)}", url=url), False


def _first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an error's text, shortened (aiohttp's parser errors quote raw bytes)."""
    message = getattr(exc, "message", None)  # aiohttp: the parser's text without the repr
    text = (message if isinstance(message, str) and message else str(exc)).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def _disk_error(exc: OSError, folder: Path, url: str, doing: str) -> DownloadError:
    """A file-system failure under ``folder``, named by folder and cause."""
    if exc.errno in (errno.ENOSPC, _EDQUOT):
        reason = "the disk is full"
    elif exc.errno == errno.EROFS:
        reason = "the file system is read-only"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif isinstance(exc, FileExistsError | NotADirectoryError):
        reason = "a file is in the way of the folder"
    else:
        reason = exc.strerror or type(exc).__name__
    message = f"could not {doing} in {folder}: {reason} ({type(exc).__name__}: {exc.strerror})"
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
        message += f"; {free:,} bytes free on that disk"
    return DownloadError(message, url=url)


def _parse_url(raw: str, url: str) -> httpx.URL:
    """``raw`` as an http(s) URL with a host, or a :class:`DownloadError` saying why not."""
    if not isinstance(raw, str) or not raw.strip():
        raise DownloadError(f"the video URL is empty ({raw!r})", url=url)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise DownloadError(
            f"the video URL contains control characters (CR, LF, ...): {raw[:200]!r}", url=url
        )
    try:
        parsed = httpx.URL(raw)
        port = parsed.port
    except Exception as exc:  # httpx.InvalidURL, and anything odder
        raise DownloadError(f"unparsable video URL {raw[:200]!r}: {exc}", url=url) from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise DownloadError(f"not an http(s) video URL: {raw[:200]!r}", url=url)
    if port is not None and not 0 < port < 65536:
        raise DownloadError(f"invalid port in the video URL: {raw[:200]!r}", url=url)
    return parsed


# ---------------------------------------------------------------------------- one attempt


async def _download_once(
    http: httpx.AsyncClient,
    parsed: httpx.URL,
    url: str,
    target: Path,
    *,
    overwrite: bool,
    max_bytes: int,
    timeout: httpx.Timeout,
    api_host: str | None,
) -> DownloadedVideo:
    current = parsed
    for _ in range(_MAX_REDIRECTS + 1):
        response = await _send(http, current, timeout, api_host)
        try:
            if response.status_code in _REDIRECT_STATUSES:
                location = response.headers.get("location", "").strip()
                if not location:
                    raise DownloadError(
                        f"the video host answered {response.status_code} without a Location",
                        url=url,
                    )
                try:
                    joined = str(current.join(location))
                except Exception as exc:
                    raise DownloadError(
                        f"the video host redirected to an unparsable URL {location[:200]!r}",
                        url=url,
                    ) from exc
                current = _parse_url(joined, url)
                continue
            return await _receive(response, url, target, overwrite=overwrite, max_bytes=max_bytes)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
    raise DownloadError(
        f"the video host redirected more than {_MAX_REDIRECTS} times (a redirect loop?)", url=url
    )


async def _send(
    http: httpx.AsyncClient, url: httpx.URL, timeout: httpx.Timeout, api_host: str | None
) -> httpx.Response:
    """One GET, no redirects followed, no encodings asked for, no credentials for other hosts."""
    request = http.build_request("GET", url, timeout=timeout)
    request.headers["Accept-Encoding"] = "identity"
    # The video host needs no key: drop one set as a default header on the HTTP client.
    request.headers.pop("Authorization", None)
    same_host = api_host is not None and (url.host or "").lower() == api_host.lower()
    if same_host:
        return await http.send(request, stream=True, follow_redirects=False)
    for name in _CREDENTIAL_HEADERS:
        request.headers.pop(name, None)
    # auth=None disables the client's auth for this request (httpx uses it only when the
    # argument is left at USE_CLIENT_DEFAULT; see AsyncClient._build_request_auth).
    return await http.send(request, stream=True, follow_redirects=False, auth=None)


async def _receive(
    response: httpx.Response, url: str, target: Path, *, overwrite: bool, max_bytes: int
) -> DownloadedVideo:
    status = response.status_code
    if status >= 500 or status == 429:
        raise _Transient(DownloadError(f"video host answered {status}", url=url))
    if status != 200:
        raise DownloadError(f"video host answered {status} for the download", url=url)
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    generic = ctype in _GENERIC_TYPES
    if not generic and not ctype.startswith(_VIDEO_TYPES):
        raise DownloadIntegrityError(f"expected a video, got content-type {ctype[:100]!r}", url=url)
    preloaded = response.is_stream_consumed  # a transport that read (and decoded) the body
    decoder = _Decoder(response.headers, url, already_decoded=preloaded)
    wire_cap = max_bytes if decoder.identity else max_bytes + max_bytes // 64 + 65536
    declared: int | None = None
    if "content-length" in response.headers:
        try:
            declared = int(response.headers["content-length"])
        except ValueError:
            raise DownloadIntegrityError("invalid Content-Length header", url=url) from None
        if declared < 0:
            raise DownloadIntegrityError("invalid Content-Length header", url=url)
        if declared > wire_cap:
            raise DownloadIntegrityError(
                f"video is {declared} bytes, over the {max_bytes}-byte cap", url=url
            )
    # Content-Length counts wire bytes; a transport that preloaded the body decoded it already
    checked = None if preloaded and decoder.encoded else declared
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.part"
    sink = _Sink(url, folder, max_bytes, generic=generic, ctype=ctype)
    wire = 0
    try:
        try:
            fh = await anyio.open_file(tmp, "xb")
        except OSError as exc:
            raise _disk_error(exc, folder, url, "create a temporary file") from exc
        async with fh:
            sink.file = fh
            body = _Body(response, preloaded)
            try:
                while True:
                    try:
                        chunk = await body.next()
                    except Exception as exc:
                        raise _body_error(exc, wire, checked, url, folder) from exc
                    if chunk is None:
                        break
                    wire += len(chunk)
                    if checked is not None and wire > checked:
                        raise DownloadIntegrityError(
                            f"body longer than its Content-Length ({checked})", url=url
                        )
                    if wire > wire_cap:
                        raise DownloadIntegrityError(
                            f"video exceeds the {max_bytes}-byte cap", url=url
                        )
                    if checked is not None and wire == checked and not preloaded:
                        extra = _data_past_end(response)
                        if extra is not None:
                            raise DownloadIntegrityError(
                                f"body longer than its Content-Length ({declared}): {extra}",
                                url=url,
                            )
                    for piece in decoder.feed(chunk):
                        await sink.write(piece)
            finally:
                # a body abandoned early (cap, bad length) is closed now, not by GC
                with anyio.CancelScope(shield=True):
                    await body.close()
            if checked is not None and wire != checked:
                raise _Transient(
                    DownloadIntegrityError(
                        f"truncated download: got {wire} of {checked} bytes", url=url
                    )
                )
            if wire == 0:
                raise _Transient(DownloadIntegrityError("empty download", url=url))
            for piece in decoder.finish():
                await sink.write(piece)
            await sink.close()
        try:
            await anyio.to_thread.run_sync(_move_into_place, tmp, target, overwrite)
        except FileExistsError as exc:
            raise DownloadTargetExistsError(str(exc), url=url) from None
        except OSError as exc:
            raise _disk_error(exc, folder, url, "move the video into place") from exc
        return DownloadedVideo(path=target, size=sink.size, sha256=sink.hexdigest(), url=url)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_unlink_quietly, tmp)


def _body_error(
    exc: Exception, got: int, declared: int | None, url: str, folder: Path
) -> Exception:
    """What a failure while reading the body means (``_Transient`` when worth another try)."""
    name = type(exc).__name__
    kind = _aiohttp_error(exc)
    if kind == "past-end" or (kind == "parser" and declared is not None and got >= declared):
        # aiohttp's parser failing after the whole body: bytes past the announced end
        return DownloadIntegrityError(
            f"body longer than its Content-Length ({declared}): the video host sent data past "
            f"the end ({name}: {_first_line(exc)})",
            url=url,
        )
    network = isinstance(
        exc, httpx.TransportError | TimeoutError | asyncio.TimeoutError | ConnectionError
    ) or kind in {"parser", "transient"}
    if not network:
        error, transient = _classify(exc, url, folder)
        return _Transient(error) if transient else error
    if declared is not None and got < declared:
        # over a real socket a short body shows up as a broken connection
        return _Transient(
            DownloadIntegrityError(
                f"truncated download: got {got} of {declared} bytes ({name})", url=url
            )
        )
    return _Transient(
        DownloadError(f"the download broke after {got} bytes: {name}: {_first_line(exc)}", url=url)
    )


def _data_past_end(response: httpx.Response) -> str | None:
    """Evidence that the host sent bytes past the end of the body, or ``None``.

    Called once ``Content-Length`` bytes have arrived, before the connection is given back.
    httpx offers no public way to see this, so it walks the response's stream wrappers to the
    connection: httpcore's HTTP/1.1 parser (h11) stops at ``Content-Length`` and keeps what
    followed in its buffer; aiohttp's parser records a protocol error on the connection (it
    may also raise it, which :func:`_body_error` and :func:`_classify` handle). Best effort:
    bytes that arrive only after the body was read are not seen.
    """
    obj: object = response.stream
    for _ in range(8):
        state = getattr(obj, "_h11_state", None)
        if state is not None:
            try:
                data, _closed = state.trailing_data
            except Exception:
                return None
            return f"at least {len(data)} more bytes followed" if data else None
        aio_response = getattr(obj, "_aiohttp_response", None)
        if aio_response is not None:
            exception = getattr(getattr(aio_response, "_protocol", None), "exception", None)
            try:
                error = exception() if callable(exception) else None
            except Exception:
                return None
            if error is not None and _aiohttp_error(error) in {"parser", "past-end"}:
                return f"{type(error).__name__}: {_first_line(error)}"
            return None
        nxt = None
        for attr in ("_stream", "_httpcore_stream", "_connection"):
            nxt = getattr(obj, attr, None)
            if nxt is not None:
                break
        if nxt is None:
            return None
        obj = nxt
    return None


class _Body:
    """The body as sent (no content decoding, so it matches Content-Length), as it arrives.

    :meth:`close` after an early stop closes the response, then pulls the (now failing)
    stream once more, so httpx's and httpcore's nested stream generators end here instead of
    being finalized by the garbage collector (which trio reports as a ``ResourceWarning``).
    """

    def __init__(self, response: httpx.Response, preloaded: bool) -> None:
        self._response = response
        self._preloaded = preloaded
        self._iter: AsyncIterator[bytes] | None = None
        self._done = False

    async def next(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end of the body."""
        if self._done:
            return None
        if self._preloaded:  # a transport that preloaded the body (MockTransport)
            self._done = True
            return self._response.content
        if self._iter is None:
            self._iter = self._response.aiter_raw()
        while True:
            try:
                chunk = await self._iter.__anext__()
            except StopAsyncIteration:
                self._done = True
                return None
            except BaseException:
                self._done = True
                raise
            if chunk:
                return chunk

    async def close(self) -> None:
        """Close the response; finish the stream generators if the body was left early."""
        await self._response.aclose()
        if self._done or self._iter is None:
            return
        with anyio.move_on_after(1):
            for _ in range(64):  # an in-memory stream ignores the close: bounded drain
                try:
                    await self._iter.__anext__()
                except (StopAsyncIteration, Exception):
                    self._done = True
                    return
        aclose = getattr(self._iter, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


# ---------------------------------------------------------------------------- decoding


class _Inflate:
    """One ``gzip`` (any number of members) or ``deflate`` layer, in bounded steps."""

    def __init__(self, gzip: bool, url: str) -> None:
        self.gzip = gzip
        self.url = url
        self.started = False
        self._raw_deflate = False
        self._d = self._new()

    def _new(self) -> Any:
        if self.gzip:
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    def _corrupt(self, why: str) -> DownloadIntegrityError:
        name = "gzip" if self.gzip else "deflate"
        return DownloadIntegrityError(
            f"the {name}-encoded video body is corrupt: {why}", url=self.url
        )

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self._d.eof:
                data = self._d.unused_data + data
                if not data:
                    return
                if not self.gzip:
                    raise self._corrupt("data after the end of the compressed stream")
                self._d = self._new()  # the next gzip member
            try:
                out = self._d.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                if not self.gzip and not self.started and not self._raw_deflate:
                    self._raw_deflate = True  # "deflate" sent as a raw stream (no zlib header)
                    self._d = self._new()
                    continue
                raise self._corrupt(str(exc)) from exc
            self.started = True
            if out:
                yield out
            if self._d.eof:
                data = b""
                continue
            data = self._d.unconsumed_tail
            if not data and len(out) < _INFLATE_STEP:
                return

    def finish(self) -> None:
        if not self._d.eof:
            raise self._corrupt("the compressed stream ends early")


class _Decoder:
    """Undoes the reply's ``Content-Encoding`` (gzip, x-gzip, deflate) or refuses it."""

    def __init__(self, headers: httpx.Headers, url: str, *, already_decoded: bool) -> None:
        names = [v.strip().lower() for v in headers.get_list("content-encoding", split_commas=True)]
        names = [n for n in names if n and n != "identity"]
        self.encoded = bool(names)
        self._layers: list[_Inflate] = []
        if already_decoded:
            return
        for name in reversed(names):  # listed in the order they were applied
            if name in {"gzip", "x-gzip"}:
                self._layers.append(_Inflate(True, url))
            elif name == "deflate":
                self._layers.append(_Inflate(False, url))
            else:
                raise DownloadIntegrityError(
                    f"the video host sent Content-Encoding {name[:40]!r}, which the downloader "
                    "does not decode (it asked for identity)",
                    url=url,
                )
        if self._layers:
            logger.debug("decoding a %s-encoded download", ", ".join(names))

    @property
    def identity(self) -> bool:
        """No decoding to do: wire bytes are file bytes."""
        return not self._layers

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[index].feed(data):
            yield from self._through(index + 1, piece)

    def finish(self) -> Iterator[bytes]:
        for layer in self._layers:
            layer.finish()
        return iter(())


# ---------------------------------------------------------------------------- writing


class _Sink:
    """Checks, hashes and writes the decoded body; holds back its first bytes to sniff them."""

    def __init__(self, url: str, folder: Path, max_bytes: int, *, generic: bool, ctype: str):
        self.url = url
        self.folder = folder
        self.max_bytes = max_bytes
        self.generic = generic
        self.ctype = ctype
        self.size = 0
        self.file: Any = None
        self._digest = hashlib.sha256()
        self._head: bytearray | None = bytearray()

    async def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise DownloadIntegrityError(
                f"video exceeds the {self.max_bytes}-byte cap", url=self.url
            )
        self._digest.update(piece)
        if self._head is None:
            await self._write(piece)
            return
        self._head += piece
        if len(self._head) >= _SNIFF_BYTES:
            await self._release_head()

    async def _release_head(self) -> None:
        head = bytes(self._head or b"")
        self._head = None
        problem = _sniff(head, generic=self.generic)
        if problem is not None:
            shown = self.ctype or "no content-type"
            raise DownloadIntegrityError(
                f"expected a video, got {problem} ({shown}); not saved", url=self.url
            )
        await self._write(head)

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self.file.write(data)
        except OSError as exc:
            raise _disk_error(exc, self.folder, self.url, "write the video") from exc

    async def close(self) -> None:
        """Sniff a short body too, then flush and fsync."""
        if self._head is not None:
            await self._release_head()
        try:
            await self.file.flush()
            await anyio.to_thread.run_sync(os.fsync, self.file.wrapped.fileno())
        except OSError as exc:
            raise _disk_error(exc, self.folder, self.url, "write the video") from exc

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _sniff(head: bytes, *, generic: bool) -> str | None:
    """What the first bytes are, if not acceptable as a video (``None`` when they are)."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return None
    if head.startswith(_EBML_MAGIC):
        return None
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f")
    lowered = stripped[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if stripped.startswith(b"<"):
        return "HTML or XML markup"
    if stripped.startswith((b"{", b"[")):
        return "JSON"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data without a Content-Encoding"
    if not generic:
        return None  # a video/* type: taken at its word
    if not head:
        return "an empty body"
    if _looks_like_text(head):
        return "plain text"
    if len(head) < 8:
        return f"{len(head)} bytes, too short for a video"
    return f"data that is not an MP4, QuickTime or WebM file (it starts {head[:8].hex()})"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


# ---------------------------------------------------------------------------- files


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and refuses to replace an existing file
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, _EDQUOT):
            raise
        # file systems without hard links: best effort check-then-rename
        if target.exists():
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, target)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # never mask the real error; say what was left behind
        logger.warning("could not remove the temporary file %s: %s", path, exc)
