"""Classification of download failures: every error becomes a typed, worded one, once.

:func:`classify` maps whatever a transport, the file system or this package raised to a
:class:`~veo_async.DownloadError` and whether another attempt may help; :class:`Transient`
marks a failure already known to be worth another try. aiohttp is optional (the ``fast``
extra), so its errors are recognised by looking the module up, never by importing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

from .._exceptions import DownloadError, DownloadIntegrityError

EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)

#: A typed error and whether another attempt may help.
Verdict = tuple[DownloadError, bool]


class DownloadTargetExistsError(DownloadError, FileExistsError):
    """The target file exists and ``overwrite=True`` was not passed; nothing was downloaded.

    A :class:`~veo_async.DownloadError` (so a batch records it as that job's failure) and a
    ``FileExistsError`` (so code written against the standard library keeps working).
    """


class Transient(Exception):
    """A failure worth another attempt; carries the error to raise when attempts run out."""

    def __init__(self, error: DownloadError) -> None:
        super().__init__(str(error))
        self.error = error


def aiohttp_error(exc: BaseException) -> str | None:
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


def classify(exc: Exception, url: str, folder: Path) -> Verdict:
    """The typed error for any failure of a download, and whether another attempt may help.

    Asked in order: errors of this package, of httpx, of aiohttp, then the standard library's
    (network, then file system); anything else is a permanent :class:`DownloadError`.
    """
    if isinstance(exc, DownloadError):
        return exc, False
    if isinstance(exc, Transient):
        return exc.error, True
    verdict = _httpx_verdict(exc, url) or _aiohttp_verdict(exc, url)
    if verdict is None:
        verdict = _stdlib_verdict(exc, url, folder)
    return verdict


def _httpx_verdict(exc: Exception, url: str) -> Verdict | None:
    """The verdict for an httpx error, or ``None`` for any other error."""
    name = type(exc).__name__
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
    return None


def _aiohttp_verdict(exc: Exception, url: str) -> Verdict | None:
    """The verdict for an aiohttp error, or ``None`` for any other error."""
    kind = aiohttp_error(exc)
    if kind is None:
        return None
    name = type(exc).__name__
    detail = first_line(exc)
    if kind == "past-end":
        message = (
            "body longer than its Content-Length: the video host sent data past the end "
            f"({name}: {detail})"
        )
        return DownloadIntegrityError(message, url=url), False
    if kind == "parser":
        # A reply whose framing cannot be parsed (on a kept-alive connection: bytes past the
        # announced length are read as the next reply's status line) is a body that cannot be
        # trusted: an integrity failure, retried like a truncated one.
        message = f"the video host sent a malformed reply ({name}: {detail})"
        return DownloadIntegrityError(message, url=url), True
    return DownloadError(f"connection to the video host failed: {name}: {detail}", url=url), (
        kind == "transient"
    )


def _stdlib_verdict(exc: Exception, url: str, folder: Path) -> Verdict:
    """The verdict for a standard-library (network or file-system) error, or any other."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):  # (an OSError: checked first)
        return DownloadError(f"the video host timed out ({name})", url=url), True
    if isinstance(exc, ConnectionError):
        return DownloadError(f"connection to the video host failed: {name}: {exc}", url=url), True
    if isinstance(exc, FileExistsError):
        return DownloadTargetExistsError(str(exc), url=url), False
    if isinstance(exc, OSError):
        return disk_error(exc, folder, url, "write the video"), False
    return DownloadError(f"download failed: {name}: {first_line(exc)}", url=url), False


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an error's text, shortened (aiohttp's parser errors quote raw bytes)."""
    message = getattr(exc, "message", None)  # aiohttp: the parser's text without the repr
    text = (message if isinstance(message, str) and message else str(exc)).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def disk_error(exc: OSError, folder: Path, url: str, doing: str) -> DownloadError:
    """A file-system failure under ``folder``, named by folder and cause."""
    if exc.errno in (errno.ENOSPC, EDQUOT):
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
