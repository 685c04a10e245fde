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

The parts, in the order a download meets them: :mod:`._request` (the URL, one GET per hop,
redirects), :mod:`._receive` (status, type, length, the body loop), :mod:`._body` (the body as
it arrives), :mod:`._decode` (``Content-Encoding``), :mod:`._sniff` (is it a video),
:mod:`._files` (the temporary file and the atomic move) and :mod:`._errors` (every failure
classified once).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

import anyio
import httpx

from .. import _timing
from .._exceptions import DownloadError
from .._retry import RetryConfig, backoff_delay
from ._errors import DownloadTargetExistsError, Transient, classify, disk_error
from ._files import DownloadedVideo
from ._request import download_once, parse_url

__all__ = [
    "DownloadTargetExistsError",
    "DownloadedVideo",
    "download_video",
    "safe_filename",
    "url_file_stem",
]

logger = logging.getLogger("veo_async")

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
        error, _ = classify(exc, url, target.parent)
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
    parsed = parse_url(url, url)
    if not overwrite and await anyio.Path(target).exists():
        raise DownloadTargetExistsError(
            f"{target} exists; pass overwrite=True to replace it", url=url
        )
    folder = target.parent
    try:
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, folder, url, "create the folder") from exc
    attempt = 0
    while True:
        attempt += 1
        try:
            return await download_once(
                http,
                parsed,
                url,
                target,
                overwrite=overwrite,
                max_bytes=max_bytes,
                timeout=timeout,
                api_host=api_host,
            )
        except Transient as exc:
            error: DownloadError = exc.error
            cause = exc.__cause__
        except DownloadError:
            raise
        except Exception as exc:
            error, transient = classify(exc, url, folder)
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
