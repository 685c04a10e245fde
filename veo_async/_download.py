"""Streamed, atomic, key-free video downloads.

The body is streamed into a temporary file in the target's folder, hashed on the way, checked
against ``Content-Length`` and the size cap, flushed to disk, then moved into place: with
``os.link`` (which fails if the target exists) unless overwriting was asked for, with
``os.replace`` otherwise. A failed or interrupted download leaves no partial file behind.

The request never carries an ``Authorization`` header, whatever the HTTP client's defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from . import _timing
from ._exceptions import DownloadError, DownloadIntegrityError
from ._retry import RetryConfig, backoff_delay

__all__ = ["DownloadedVideo", "download_video", "safe_filename"]

logger = logging.getLogger("veo_async")

_OK_TYPES = ("video/", "application/octet-stream", "binary/octet-stream", "application/mp4")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class DownloadedVideo:
    """A finished download: where it is, how big, its SHA-256, and where it came from."""

    path: Path
    """The final file."""
    size: int
    """Bytes written."""
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
    """Download ``url`` to ``target`` safely, retrying transient failures; see module doc."""
    parsed = httpx.URL(url)
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise DownloadError(f"not an http(s) video URL: {url[:200]!r}", url=url)
    target = Path(target)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    folder = target.parent
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _download_once(
                http, url, target, overwrite=overwrite, max_bytes=max_bytes, timeout=timeout
            )
        except (httpx.TransportError, _Transient) as exc:
            if attempt >= retry.max_attempts:
                if isinstance(exc, _Transient):
                    raise exc.error from None
                raise DownloadError(
                    f"download failed after {attempt} attempts: {type(exc).__name__}: {exc}",
                    url=url,
                ) from exc
            logger.debug("download attempt %d failed: %s", attempt, exc)
            await _timing.sleep(backoff_delay(attempt, retry) * time_scale)


class _Transient(Exception):
    def __init__(self, error: DownloadError) -> None:
        super().__init__(str(error))
        self.error = error


async def _download_once(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    overwrite: bool,
    max_bytes: int,
    timeout: httpx.Timeout,
) -> DownloadedVideo:
    request = http.build_request("GET", url, timeout=timeout)
    # The CDN needs no key: make sure none leaks from the client's default headers.
    request.headers.pop("Authorization", None)
    response = await http.send(request, stream=True, follow_redirects=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.part"
    try:
        status = response.status_code
        if status >= 500 or status == 429:
            raise _Transient(DownloadError(f"video host answered {status}", url=url))
        if status != 200:
            raise DownloadError(f"video host answered {status} for the download", url=url)
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith(_OK_TYPES):
            raise DownloadIntegrityError(f"expected a video, got content-type {ctype!r}", url=url)
        declared: int | None = None
        if "content-length" in response.headers:
            try:
                declared = int(response.headers["content-length"])
            except ValueError:
                raise DownloadIntegrityError("invalid Content-Length header", url=url) from None
            if declared > max_bytes:
                raise DownloadIntegrityError(
                    f"video is {declared} bytes, over the {max_bytes}-byte cap", url=url
                )
        digest = hashlib.sha256()
        size = 0
        async with await anyio.open_file(tmp, "xb") as fh:
            try:
                # aclosing: a body abandoned early (cap, bad length) is closed now, not by GC
                async with contextlib.aclosing(_raw_chunks(response)) as chunks:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadIntegrityError(
                                f"video exceeds the {max_bytes}-byte cap", url=url
                            )
                        if declared is not None and size > declared:
                            raise DownloadIntegrityError(
                                f"body longer than its Content-Length ({declared})", url=url
                            )
                        digest.update(chunk)
                        await fh.write(chunk)
            except httpx.TransportError as exc:
                # over a real socket a short body shows up as a broken connection
                if declared is not None and size < declared:
                    raise _Transient(
                        DownloadIntegrityError(
                            f"truncated download: got {size} of {declared} bytes "
                            f"({type(exc).__name__})",
                            url=url,
                        )
                    ) from exc
                raise
            await fh.flush()
            await anyio.to_thread.run_sync(os.fsync, fh.wrapped.fileno())
        if declared is not None and size != declared:
            raise _Transient(
                DownloadIntegrityError(
                    f"truncated download: got {size} of {declared} bytes", url=url
                )
            )
        if size == 0:
            raise _Transient(DownloadIntegrityError("empty download", url=url))
        await anyio.to_thread.run_sync(_move_into_place, tmp, target, overwrite)
        return DownloadedVideo(path=target, size=size, sha256=digest.hexdigest(), url=url)
    except httpx.TransportError:
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
            await anyio.to_thread.run_sync(_unlink_quietly, tmp)


async def _raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The body as sent (no content decoding, so it matches Content-Length)."""
    if response.is_stream_consumed:  # a transport that preloaded the body (MockTransport)
        yield response.content
        return
    raw = response.aiter_raw(_CHUNK)
    try:
        async for chunk in raw:
            yield chunk
    finally:
        aclose = getattr(raw, "aclose", None)
        if aclose is not None:
            await aclose()


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and refuses to replace an existing file
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
    except OSError:
        # file systems without hard links: best effort check-then-rename
        if target.exists():
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, target)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
