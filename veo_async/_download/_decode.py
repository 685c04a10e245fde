"""Undoing a ``Content-Encoding`` the video host applied although identity was asked for.

``gzip``, ``x-gzip`` and ``deflate`` (with or without its zlib header) are decoded, in bounded
steps so a small compressed chunk cannot balloon in memory; any other encoding is refused.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

import httpx

from .._exceptions import DownloadIntegrityError

logger = logging.getLogger("veo_async")

#: Decoded bytes produced per step when inflating (a small compressed chunk can be a bomb).
INFLATE_STEP = 256 * 1024


class Inflate:
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
                out = self._d.decompress(data, INFLATE_STEP)
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
            if not data and len(out) < INFLATE_STEP:
                return

    def finish(self) -> None:
        if not self._d.eof:
            raise self._corrupt("the compressed stream ends early")


class Decoder:
    """Undoes the reply's ``Content-Encoding`` (gzip, x-gzip, deflate) or refuses it."""

    def __init__(self, headers: httpx.Headers, url: str, *, already_decoded: bool) -> None:
        names = [v.strip().lower() for v in headers.get_list("content-encoding", split_commas=True)]
        names = [n for n in names if n and n != "identity"]
        self.encoded = bool(names)
        self._layers: list[Inflate] = []
        if already_decoded:
            return
        for name in reversed(names):  # listed in the order they were applied
            if name in {"gzip", "x-gzip"}:
                self._layers.append(Inflate(True, url))
            elif name == "deflate":
                self._layers.append(Inflate(False, url))
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
