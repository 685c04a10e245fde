"""The HTTP stack of a client: which transport it uses, and the direct path for status requests.

The choice (made once, on the client's first use):

* ``http_client=`` given: that client, as it is (``transport_name == "user"``).
* asyncio, ``httpx-aiohttp`` importable (a core dependency on CPython) and
  ``fast_transport`` not ``False``: httpx over httpx-aiohttp's ``AiohttpTransport``
  (``"aiohttp"``), plus a :class:`DirectAPI` on the same aiohttp session for status requests.
* otherwise (trio, another Python implementation, ``fast_transport=False``): httpx's own
  transport (``"httpx"``).

Why aiohttp underneath by default: measured in ``docs/benchmarks/profile.md``, a status request
on httpx's own transport costs about 7x the CPU of plain aiohttp, whatever the pool settings
(httpcore scans every pooled connection on each request arrival and release); httpx over
aiohttp costs about 2.6x, and with the direct path below the SDK's status request about 1.5x.

:class:`DirectAPI` sends a status ``GET`` straight to the aiohttp ``ClientSession`` the httpx
transport itself uses (one connection pool), skipping httpx's per-request ``Request`` /
``Response`` objects, URL re-parsing and cookie bookkeeping, which cost more CPU than aiohttp's
whole request path. It sends the same headers httpx would and raises the same exceptions (mapped
by httpx-aiohttp's own exception map), so the boundary (:mod:`veo_async._boundary`) reads,
caps, parses and classifies its replies exactly as it does httpx's. Creates keep the httpx path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from ._exceptions import ConfigurationError
from ._loops import fast_transport_available, running_on_asyncio

if TYPE_CHECKING:
    import aiohttp

__all__ = ["USER_AGENT", "DirectAPI", "HttpStack", "open_http"]

USER_AGENT = "veo-async/0.1"
"""The ``User-Agent`` of every request (API and downloads) of a client the SDK creates."""

#: Characters ``urlencode`` (``quote_plus``) leaves as they are.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def _query(params: Mapping[str, str]) -> str:
    """``urlencode(params)``, as httpx encodes params, without its cost for plain ids."""
    if all(_PLAIN(k) and _PLAIN(v) for k, v in params.items()):
        return "&".join(f"{k}={v}" for k, v in params.items())
    return urlencode(params)


@dataclass(frozen=True)
class HttpStack:
    """What :func:`open_http` built: the httpx client, its transport's name, the direct path."""

    http: httpx.AsyncClient
    """The client every request can go through (downloads, creates, and polls without
    ``direct``)."""
    name: str
    """``"aiohttp"`` or ``"httpx"``."""
    direct: DirectAPI | None
    """Status requests straight to aiohttp (``None`` on httpx's own transport)."""


def open_http(
    *, timeout: httpx.Timeout, limits: httpx.Limits, fast_transport: bool | None
) -> HttpStack:
    """Build the HTTP client of an :class:`~veo_async.AsyncVeoClient` (see the module doc).

    ``fast_transport``: ``None`` picks aiohttp when running on asyncio and available, ``False``
    never, ``True`` insists (a :class:`ConfigurationError` if httpx-aiohttp is not installed;
    on trio httpx's own transport is used either way).
    """
    common: dict[str, Any] = {
        "timeout": timeout,
        "limits": limits,
        "follow_redirects": False,
        "headers": {"User-Agent": USER_AGENT},
    }
    if fast_transport is not False and running_on_asyncio():
        if fast_transport_available():
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
            # The transport would create this session on its first request; creating it here
            # lets the direct path share it (one pool, closed with the httpx client).
            session = transport.get_client()
            transport.client = session
            http = httpx.AsyncClient(transport=transport, **common)
            return HttpStack(http, "aiohttp", DirectAPI(session, http.headers))
        if fast_transport:
            raise ConfigurationError(
                "fast_transport=True needs httpx-aiohttp, a dependency of veo-async on CPython; "
                "on another Python implementation: pip install 'veo-async[fast]'"
            )
    return HttpStack(httpx.AsyncClient(**common), "httpx", None)


class DirectAPI:
    """Status requests sent straight to the aiohttp session under httpx-aiohttp's transport.

    :meth:`request` returns the aiohttp response with its body unread; the caller reads it (with
    its own size cap and decoding), then calls ``release()`` or, on any failure, ``close()``.
    Exceptions are those of the httpx-aiohttp transport: aiohttp errors mapped to httpx ones by
    its ``map_aiohttp_exceptions`` (applied by the caller around the request *and* the read).
    """

    __slots__ = (
        "_base",
        "_for_timeout",
        "_for_url",
        "_headers",
        "_session",
        "_timeout",
        "_yarl_url",
    )

    def __init__(self, session: aiohttp.ClientSession, headers: httpx.Headers) -> None:
        import yarl

        self._session = session
        self._yarl_url = yarl.URL
        # httpx's own defaults (Accept, Accept-Encoding, Connection, User-Agent), in its order;
        # the Host header is aiohttp's, from the URL, as with the transport.
        self._headers = dict(headers.items())
        self._for_url: httpx.URL | None = None
        self._base = ""
        self._for_timeout: httpx.Timeout | None = None
        self._timeout: aiohttp.ClientTimeout | None = None

    @property
    def closed(self) -> bool:
        """Whether the aiohttp session is closed."""
        return self._session.closed

    def _client_timeout(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        """httpx's timeouts as httpx-aiohttp maps them (cached per ``httpx.Timeout``)."""
        if timeout is not self._for_timeout or self._timeout is None:
            import aiohttp

            self._timeout = aiohttp.ClientTimeout(
                sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
            )
            self._for_timeout = timeout
        return self._timeout

    async def request(
        self,
        method: str,
        url: httpx.URL,
        params: Mapping[str, str] | None,
        auth: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> aiohttp.ClientResponse:
        """Send ``method url?params`` with httpx's default headers plus ``auth``; the reply
        with its body unread (redirects are not followed, the body is not decompressed).

        ``url`` has no query of its own (the caller takes the httpx path otherwise)."""
        if url is not self._for_url:
            self._base, self._for_url = str(url), url
        # The URL exactly as before: httpx encodes params with urlencode, httpx-aiohttp hands
        # str(url) to aiohttp, which normalises it with yarl.URL.
        target = f"{self._base}?{_query(params)}" if params else self._base
        headers = {**self._headers, **auth}
        return await self._session.request(
            method,
            self._yarl_url(target),
            headers=headers,
            allow_redirects=False,
            auto_decompress=False,
            compress=False,
            timeout=self._client_timeout(timeout),
        )
