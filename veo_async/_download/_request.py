"""The request side: the URL checked, one GET per hop, redirects followed here.

Every hop goes without the API key (a default ``Authorization`` header is removed) and, to any
host other than the API host, without the HTTP client's ``auth=`` and its default ``Cookie`` /
``Proxy-Authorization`` headers; it asks for ``Accept-Encoding: identity``. At most ten
redirects are followed, each target checked like the first URL.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from .._exceptions import DownloadError
from ._files import DownloadedVideo
from ._receive import receive

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
#: Request headers that carry a credential of the HTTP client's, not meant for a video host.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


def parse_url(raw: str, url: str) -> httpx.URL:
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


async def download_once(
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
    """One attempt: follow redirects hop by hop, then receive the last hop's body."""
    current = parsed
    for _ in range(MAX_REDIRECTS + 1):
        response = await _send(http, current, timeout, api_host)
        try:
            if response.status_code in _REDIRECT_STATUSES:
                current = _redirect_target(response, current, url)
                continue
            return await receive(response, url, target, overwrite=overwrite, max_bytes=max_bytes)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
    raise DownloadError(
        f"the video host redirected more than {MAX_REDIRECTS} times (a redirect loop?)", url=url
    )


def _redirect_target(response: httpx.Response, current: httpx.URL, url: str) -> httpx.URL:
    """Where a redirect points, checked like the first URL."""
    location = response.headers.get("location", "").strip()
    if not location:
        raise DownloadError(
            f"the video host answered {response.status_code} without a Location", url=url
        )
    try:
        joined = str(current.join(location))
    except Exception as exc:
        raise DownloadError(
            f"the video host redirected to an unparsable URL {location[:200]!r}", url=url
        ) from exc
    return parse_url(joined, url)


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
