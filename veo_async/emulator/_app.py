"""The Starlette app: routes requests to the :class:`Emulator` and carries out its replies.

Socket-level faults need the connection itself. When served by :mod:`veo_async.emulator`'s
uvicorn protocol (see ``_server.py``), the request scope carries the asyncio transport under
``scope["extensions"][TRANSPORT_EXTENSION]`` and the app:

* ``reset`` (faults ``connection_reset`` and ``lost_create``): sets ``SO_LINGER`` to 0 and
  aborts the transport, so the kernel sends a TCP RST before any response byte. httpx raises
  ``httpx.ReadError`` (``[Errno 104] Connection reset by peer``).
* ``truncate`` (fault ``truncated_download``): sends the headers with the full
  ``Content-Length``, part of the body, then closes the connection. httpx raises
  ``httpx.RemoteProtocolError`` (``peer closed connection without sending complete message
  body``).

In process (``httpx.ASGITransport``, no sockets) there is no connection to break, so the app
raises the exception httpx would have raised; ``ASGITransport`` re-raises it from the
client call. A ``slow_response`` simply sleeps before answering; note that
``ASGITransport`` does not enforce httpx timeouts, so in process a client sees the delay,
not a ``ReadTimeout``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from ._config import EmulatorConfig
from ._state import CDN_PREFIX, Clock, Emulator, Reply
from ._validation import UNIVERSAL_PATH, VENDOR_PATH

__all__ = ["TRANSPORT_EXTENSION", "create_app"]

TRANSPORT_EXTENSION = "veo_async.emulator.transport"
"""Scope extension key under which the emulator's uvicorn protocol passes the transport."""

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _ReplyResponse:
    """An ASGI response that carries out a :class:`Reply`, faults included."""

    def __init__(self, reply: Reply, method: str = "GET") -> None:
        self.reply = reply
        self.method = method

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self.reply
        if reply.delay > 0:
            await anyio.sleep(reply.delay)
        if reply.action == "reset":
            await _reset_connection(scope)
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if reply.action == "truncate":
            part = reply.body[: reply.truncate_at]
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await _close_connection(scope, len(part), len(reply.body))
            return
        body = b"" if self.method == "HEAD" else reply.body
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _transport(scope: Scope) -> Any:
    extensions = scope.get("extensions") or {}
    return extensions.get(TRANSPORT_EXTENSION)


async def _reset_connection(scope: Scope) -> None:
    transport = _transport(scope)
    if transport is None:
        raise httpx.ReadError("[Errno 104] Connection reset by peer (veo_async.emulator)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # a platform without SO_LINGER: plain close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server see the connection as lost before the app returns, so it does not
    # try (and log) a 500 on the dead connection.
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()


async def _close_connection(scope: Scope, received: int, expected: int) -> None:
    transport = _transport(scope)
    if transport is None:
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body "
            f"(received {received} bytes, expected {expected})"
        )
    transport.close()
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()


def _base_url(request: Request) -> str:
    host = request.headers.get("host") or "localhost"
    return f"{request.url.scheme}://{host}"


def create_app(
    config: EmulatorConfig | None = None,
    *,
    emulator: Emulator | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """Build the ASGI app of an emulator.

    Pass a config (a new :class:`Emulator` is made, with ``clock`` if given) or an existing
    ``emulator``. The emulator is at ``app.state.emulator``.
    """
    emu = emulator if emulator is not None else Emulator(config, clock=clock)

    async def api(request: Request) -> _ReplyResponse:
        path = request.url.path
        authorization = request.headers.get("authorization")
        if request.method == "POST":
            raw = await request.body()
            return _ReplyResponse(emu.handle_create(path, authorization, raw, _base_url(request)))
        if request.method in ("GET", "HEAD"):
            generation_id = request.query_params.get("generation_id")
            reply = emu.handle_poll(path, authorization, generation_id, _base_url(request))
            return _ReplyResponse(reply, request.method)
        return _ReplyResponse(emu.handle_method_not_allowed(path, request.method))

    async def cdn(request: Request) -> _ReplyResponse:
        if request.method not in ("GET", "HEAD"):
            reply = emu.handle_method_not_allowed(request.url.path, request.method)
            return _ReplyResponse(reply)
        reply = emu.handle_download(
            request.url.path,
            "authorization" in request.headers,
            request.method,
            request.headers.get("range"),
        )
        return _ReplyResponse(reply, request.method)

    async def not_found(request: Request) -> _ReplyResponse:
        return _ReplyResponse(emu.handle_not_found(request.url.path), request.method)

    async def stats(request: Request) -> _ReplyResponse:
        flag = request.query_params.get("generations", "1").lower()
        doc = emu.stats(include_generations=flag not in ("0", "false", "no"))
        return _ReplyResponse(emu.control_reply(200, doc))

    async def config_endpoint(request: Request) -> _ReplyResponse:
        if request.method in ("POST", "PATCH"):
            try:
                patch = await request.json()
            except ValueError:
                return _ReplyResponse(emu.control_reply(400, {"message": "Invalid JSON"}))
            if not isinstance(patch, dict):
                return _ReplyResponse(emu.control_reply(400, {"message": "Expected an object"}))
            try:
                new = emu.configure(patch)
            except ValidationError as exc:
                detail = exc.errors(include_url=False, include_context=False, include_input=False)
                doc = {"message": "Invalid emulator config", "errors": detail}
                return _ReplyResponse(emu.control_reply(400, doc))
            return _ReplyResponse(emu.control_reply(200, new.model_dump(mode="json")))
        return _ReplyResponse(emu.control_reply(200, emu.config.model_dump(mode="json")))

    async def reset(request: Request) -> _ReplyResponse:
        emu.reset()
        return _ReplyResponse(emu.control_reply(200, {"reset": True}))

    async def restart(request: Request) -> _ReplyResponse:
        emu.restart()
        return _ReplyResponse(emu.control_reply(200, {"restarted": True}))

    async def health(request: Request) -> _ReplyResponse:
        return _ReplyResponse(emu.control_reply(200, {"status": "ok"}))

    routes = [
        Route(VENDOR_PATH, api, methods=_ALL_METHODS),
        Route(UNIVERSAL_PATH, api, methods=_ALL_METHODS),
        Route(CDN_PREFIX + "{name}", cdn, methods=_ALL_METHODS),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/config", config_endpoint, methods=["GET", "POST", "PATCH"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/restart", restart, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/{rest:path}", not_found, methods=_ALL_METHODS),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emu
    return app
