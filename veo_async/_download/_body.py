"""The reply's body as it arrives, and what a failure while reading it means.

:class:`Body` yields the body as sent (no content decoding, so it matches ``Content-Length``);
:func:`data_past_end` looks for bytes sent after the announced end; :func:`body_error` turns a
failure mid-body into a truncated (retried) or refused download.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx

from .._exceptions import DownloadError, DownloadIntegrityError
from ._errors import Transient, aiohttp_error, classify, first_line


def body_error(exc: Exception, got: int, declared: int | None, url: str, folder: Path) -> Exception:
    """What a failure while reading the body means (``Transient`` when worth another try)."""
    name = type(exc).__name__
    kind = aiohttp_error(exc)
    if kind == "past-end" or (kind == "parser" and declared is not None and got >= declared):
        # aiohttp's parser failing after the whole body: bytes past the announced end
        return DownloadIntegrityError(
            f"body longer than its Content-Length ({declared}): the video host sent data past "
            f"the end ({name}: {first_line(exc)})",
            url=url,
        )
    network = isinstance(
        exc, httpx.TransportError | TimeoutError | asyncio.TimeoutError | ConnectionError
    ) or kind in {"parser", "transient"}
    if not network:
        error, transient = classify(exc, url, folder)
        return Transient(error) if transient else error
    if declared is not None and got < declared:
        # over a real socket a short body shows up as a broken connection
        return Transient(
            DownloadIntegrityError(
                f"truncated download: got {got} of {declared} bytes ({name})", url=url
            )
        )
    return Transient(
        DownloadError(f"the download broke after {got} bytes: {name}: {first_line(exc)}", url=url)
    )


def data_past_end(response: httpx.Response) -> str | None:
    """Evidence that the host sent bytes past the end of the body, or ``None``.

    Called once ``Content-Length`` bytes have arrived, before the connection is given back.
    httpx offers no public way to see this, so it walks the response's stream wrappers to the
    connection: httpcore's HTTP/1.1 parser (h11) stops at ``Content-Length`` and keeps what
    followed in its buffer; aiohttp's parser records a protocol error on the connection (it
    may also raise it, which :func:`body_error` and :func:`~._errors.classify` handle). Best effort:
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
            if error is not None and aiohttp_error(error) in {"parser", "past-end"}:
                return f"{type(error).__name__}: {first_line(error)}"
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


class Body:
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
