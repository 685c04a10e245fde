"""The receive loop: one 200 reply's body, checked, decoded and written into place.

In order: the status (5xx and 429 are retried, anything else but 200 refused), the content
type, the ``Content-Encoding`` (a :class:`~._decode.Decoder`), the announced length against
the cap, then the body chunk by chunk (:class:`_Wire` holds the bytes on the wire to
``Content-Length`` and the cap; a :class:`~._files.Sink` writes the decoded bytes to a
temporary file), then the atomic move. The temporary file is removed whatever happens.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from .._exceptions import DownloadError, DownloadIntegrityError
from ._body import Body, body_error, data_past_end
from ._decode import Decoder
from ._errors import DownloadTargetExistsError, Transient, disk_error
from ._files import DownloadedVideo, Sink, move_into_place, unlink_quietly
from ._sniff import GENERIC_TYPES, VIDEO_TYPES


async def receive(
    response: httpx.Response, url: str, target: Path, *, overwrite: bool, max_bytes: int
) -> DownloadedVideo:
    """Save the body of ``response`` (the last hop) to ``target``; see the module doc."""
    _check_status(response.status_code, url)
    ctype, generic = _content_type(response, url)
    preloaded = response.is_stream_consumed  # a transport that read (and decoded) the body
    decoder = Decoder(response.headers, url, already_decoded=preloaded)
    wire = _Wire.for_reply(response, url, max_bytes, decoder=decoder, preloaded=preloaded)
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.part"
    sink = Sink(url, folder, max_bytes, generic=generic, ctype=ctype)
    try:
        await _write_body(response, tmp, wire, decoder, sink)
        await _place(tmp, target, overwrite, url)
        return DownloadedVideo(path=target, size=sink.size, sha256=sink.hexdigest(), url=url)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(unlink_quietly, tmp)


def _check_status(status: int, url: str) -> None:
    """5xx and 429 are worth another try; any other status but 200 is refused."""
    if status >= 500 or status == 429:
        raise Transient(DownloadError(f"video host answered {status}", url=url))
    if status != 200:
        raise DownloadError(f"video host answered {status} for the download", url=url)


def _content_type(response: httpx.Response, url: str) -> tuple[str, bool]:
    """The reply's media type and whether it is a generic one; refused unless a video's."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    generic = ctype in GENERIC_TYPES
    if not generic and not ctype.startswith(VIDEO_TYPES):
        raise DownloadIntegrityError(f"expected a video, got content-type {ctype[:100]!r}", url=url)
    return ctype, generic


def _declared_length(response: httpx.Response, url: str, max_bytes: int, cap: int) -> int | None:
    """The ``Content-Length``, if any, refused when invalid or over the wire cap."""
    if "content-length" not in response.headers:
        return None
    try:
        declared = int(response.headers["content-length"])
    except ValueError:
        raise DownloadIntegrityError("invalid Content-Length header", url=url) from None
    if declared < 0:
        raise DownloadIntegrityError("invalid Content-Length header", url=url)
    if declared > cap:
        raise DownloadIntegrityError(
            f"video is {declared} bytes, over the {max_bytes}-byte cap", url=url
        )
    return declared


@dataclass
class _Wire:
    """Counts the body's bytes as sent and holds them to ``Content-Length`` and the cap."""

    response: httpx.Response
    url: str
    max_bytes: int
    cap: int
    """Most bytes on the wire: the cap, plus some slack for a compressed body."""
    declared: int | None
    """The ``Content-Length`` header."""
    checked: int | None
    """The length the wire bytes must match (``None``: no header, or already decoded)."""
    preloaded: bool
    count: int = 0

    @classmethod
    def for_reply(
        cls,
        response: httpx.Response,
        url: str,
        max_bytes: int,
        *,
        decoder: Decoder,
        preloaded: bool,
    ) -> _Wire:
        cap = max_bytes if decoder.identity else max_bytes + max_bytes // 64 + 65536
        declared = _declared_length(response, url, max_bytes, cap)
        # Content-Length counts wire bytes; a transport that preloaded the body decoded it already
        checked = None if preloaded and decoder.encoded else declared
        return cls(response, url, max_bytes, cap, declared, checked, preloaded)

    def take(self, chunk: bytes) -> None:
        """Count ``chunk``; refuse a body longer than announced or over the cap."""
        self.count += len(chunk)
        if self.checked is not None and self.count > self.checked:
            raise DownloadIntegrityError(
                f"body longer than its Content-Length ({self.checked})", url=self.url
            )
        if self.count > self.cap:
            raise DownloadIntegrityError(
                f"video exceeds the {self.max_bytes}-byte cap", url=self.url
            )
        if self.checked is not None and self.count == self.checked and not self.preloaded:
            extra = data_past_end(self.response)
            if extra is not None:
                raise DownloadIntegrityError(
                    f"body longer than its Content-Length ({self.declared}): {extra}", url=self.url
                )

    def check_complete(self) -> None:
        """A short or empty body is a truncated download, worth another try."""
        if self.checked is not None and self.count != self.checked:
            raise Transient(
                DownloadIntegrityError(
                    f"truncated download: got {self.count} of {self.checked} bytes", url=self.url
                )
            )
        if self.count == 0:
            raise Transient(DownloadIntegrityError("empty download", url=self.url))


async def _write_body(
    response: httpx.Response, tmp: Path, wire: _Wire, decoder: Decoder, sink: Sink
) -> None:
    """Stream the body through ``wire`` and ``decoder`` into ``sink``'s file at ``tmp``."""
    try:
        fh = await anyio.open_file(tmp, "xb")
    except OSError as exc:
        raise disk_error(exc, sink.folder, sink.url, "create a temporary file") from exc
    async with fh:
        sink.file = fh
        body = Body(response, wire.preloaded)
        try:
            await _pump(body, wire, decoder, sink)
        finally:
            # a body abandoned early (cap, bad length) is closed now, not by GC
            with anyio.CancelScope(shield=True):
                await body.close()
        wire.check_complete()
        for piece in decoder.finish():
            await sink.write(piece)
        await sink.close()


async def _pump(body: Body, wire: _Wire, decoder: Decoder, sink: Sink) -> None:
    """Move every chunk of ``body`` through the checks and the decoder into ``sink``."""
    while True:
        try:
            chunk = await body.next()
        except Exception as exc:
            raise body_error(exc, wire.count, wire.checked, wire.url, sink.folder) from exc
        if chunk is None:
            return
        wire.take(chunk)
        for piece in decoder.feed(chunk):
            await sink.write(piece)


async def _place(tmp: Path, target: Path, overwrite: bool, url: str) -> None:
    """Move the finished temporary file to ``target``, atomically."""
    try:
        await anyio.to_thread.run_sync(move_into_place, tmp, target, overwrite)
    except FileExistsError as exc:
        raise DownloadTargetExistsError(str(exc), url=url) from None
    except OSError as exc:
        raise disk_error(exc, target.parent, url, "move the video into place") from exc
