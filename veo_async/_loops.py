"""Which event loop a client belongs to, and closing its connections when that loop ends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._client import AsyncVeoClient

__all__ = ["current_loop", "fast_transport_available", "loop_guard", "running_on_asyncio"]


def current_loop() -> object | None:
    """The running event loop (asyncio) or run (trio), or ``None`` outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            token: object = trio.lowlevel.current_trio_token()
            return token
        except RuntimeError:
            return None
    return None


async def loop_guard(client_ref: Callable[[], AsyncVeoClient | None], http: Any) -> Any:
    """Close ``http`` when its event loop shuts down (asyncio.run / trio.run finalize it).

    An async generator parked at ``yield``: the loop's async-generator finalizer runs the
    ``finally`` at loop shutdown, while the loop can still close connections cleanly.
    """
    try:
        yield
    finally:
        client = client_ref()
        if client is None or client._http is http:  # (gone, or still open: ours to close)
            if client is not None:
                client._http = None
                client._loop_ended = True
            with anyio.CancelScope(shield=True):
                await http.aclose()


def running_on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def fast_transport_available() -> bool:
    try:
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return False
    return True
