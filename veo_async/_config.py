"""Resolving the client's configuration: the key, the base URL, the time scale, the limits.

Each setting falls back to its environment variable (``AIMLAPI_KEY``, ``AIMLAPI_BASE_URL``,
``VEO_ASYNC_TIME_SCALE``) and is checked here, with an error that says what to fix and never
echoes the key.
"""

from __future__ import annotations

import ipaddress
import os

import httpx

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "check_limits",
    "resolve_base_url",
    "resolve_key",
    "resolve_time_scale",
]

DEFAULT_BASE_URL = "https://api.aimlapi.com"


def _is_loopback(host: str) -> bool:
    if host in {"localhost", "localhost."} or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_key(key: str) -> str:
    key = key.strip()
    if not key:
        raise ConfigurationError(
            "the API key is empty; set AIMLAPI_KEY or pass api_key=... "
            "(no key needed for the local emulator: veo-async --emulate ...)"
        )
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        # never echo the key itself
        raise ConfigurationError(
            "the API key contains spaces, control or non-ASCII characters; "
            "check how AIMLAPI_KEY was set (a stray newline or quote?)"
        )
    return key


def resolve_key(api_key: str | None) -> str:
    """The key given, else ``AIMLAPI_KEY``; a clear error (never echoing it) when unusable."""
    key = api_key if api_key is not None else os.environ.get("AIMLAPI_KEY")
    if key is None:
        raise ConfigurationError(
            "no API key: set the AIMLAPI_KEY environment variable or pass api_key=... "
            "(to try the SDK without a key, use the local emulator: "
            "veo_async.testing / `veo-async batch FILE --out DIR --emulate`)"
        )
    return _check_key(key)


def resolve_base_url(base_url: str | httpx.URL | None, allow_insecure_http: bool) -> httpx.URL:
    """The base URL given, else ``AIMLAPI_BASE_URL``, else the service; plain HTTP only to
    loopback unless allowed."""
    raw_url = base_url if base_url is not None else os.environ.get("AIMLAPI_BASE_URL")
    url = httpx.URL(str(raw_url or DEFAULT_BASE_URL).rstrip("/"))
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {str(url)!r}")
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure_http:
        raise ConfigurationError(
            f"refusing to send the API key over plain HTTP to {url.host!r}; use https:// "
            "or pass allow_insecure_http=True if you really mean it"
        )
    return url


def resolve_time_scale(time_scale: float | None) -> float:
    """The scale given, else ``VEO_ASYNC_TIME_SCALE``, else 1.0; must be positive."""
    if time_scale is None:
        raw_scale = os.environ.get("VEO_ASYNC_TIME_SCALE")
        try:
            time_scale = float(raw_scale) if raw_scale else 1.0
        except ValueError:
            raise ConfigurationError(
                f"VEO_ASYNC_TIME_SCALE must be a number, got {raw_scale!r}"
            ) from None
    if not time_scale > 0 or time_scale == float("inf"):
        raise ConfigurationError(f"time_scale must be a positive number, got {time_scale!r}")
    return time_scale


def check_limits(
    max_download_bytes: int, request_deadline: float | None, max_response_bytes: int
) -> None:
    if max_download_bytes <= 0:
        raise ConfigurationError("max_download_bytes must be positive")
    if request_deadline is not None and not request_deadline > 0:
        raise ConfigurationError(
            f"request_deadline must be positive seconds or None, got {request_deadline!r}"
        )
    if max_response_bytes <= 0:
        raise ConfigurationError("max_response_bytes must be positive")
