"""The emulator server the benchmarks run against, in its own process, plus one bench hook.

It is ``python -m veo_async.emulator`` (same app, same uvicorn protocol, same startup line) with
one extra route, ``POST /_bench/precreate``: it creates many generations in process, in a tight
loop through the emulator's own create handler (validation, limits, credits and the ledger all
apply), so the "poller alone" scenario can start tracking 100,000 ids a few seconds later
instead of spending minutes on 100,000 HTTP creates.

It also records, for :mod:`benchmarks.vs_script`, the wall time (``time.time()``, the ledger's
clock) of the first API request and of every 429 it answers (``GET /_bench/events``; cleared by
``DELETE /_bench/events``), which the ledger only counts. Nothing else differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from veo_async.emulator import (
    UNIVERSAL_PATH,
    URL_LINE_PREFIX,
    Emulator,
    EmulatorConfig,
    EmulatorProcess,
    serve,
)

__all__ = ["BenchEmulatorProcess", "main"]

PRECREATE_PATH = "/_bench/precreate"
EVENTS_PATH = "/_bench/events"


class _Events:
    """Wall times of the first API request and of every 429 answered since the last clear."""

    def __init__(self) -> None:
        self.first_request_at: float | None = None
        self.rate_limited_at: list[float] = []
        self.answers: list[tuple[float, float, str, str, int]] = []
        """Every API answer: (arrived, answered, method, path, status), wall seconds."""

    def clear(self) -> None:
        self.first_request_at = None
        self.rate_limited_at = []
        self.answers = []

    def doc(self) -> dict[str, Any]:
        return {
            "first_request_at": self.first_request_at,
            "rate_limited_at": self.rate_limited_at,
            "answers": self.answers,
        }


def _install_events(emu: Emulator) -> None:
    """Wrap the app so every API request's arrival and every 429's time are recorded."""
    events = _Events()
    inner = emu.app

    async def events_route(request: Request) -> Response:
        body = json.dumps(events.doc())
        if request.method == "DELETE":
            events.clear()
        return Response(body, media_type="application/json")

    inner.router.routes.insert(0, Route(EVENTS_PATH, events_route, methods=["GET", "DELETE"]))

    class Recorder:
        """Pure ASGI middleware: stamps API requests and 429 answers (the scope is untouched)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            path = str(scope.get("path", "")) if scope.get("type") == "http" else ""
            if not path.startswith("/v2/"):
                await self.app(scope, receive, send)
                return
            arrived = time.time()
            if events.first_request_at is None:
                events.first_request_at = arrived
            method = str(scope.get("method", ""))
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            where = f"{path}?{query}" if query else path

            async def recording_send(message: Any) -> None:
                if message.get("type") == "http.response.start":
                    status = int(message.get("status", 0))
                    now = time.time()
                    events.answers.append((arrived, now, method, where, status))
                    if status == 429:
                        events.rate_limited_at.append(now)
                await send(message)

            await self.app(scope, receive, recording_send)

    inner.add_middleware(Recorder)


def _install_precreate(emu: Emulator) -> None:
    async def precreate(request: Request) -> Response:
        doc: dict[str, Any] = await request.json()
        count = int(doc["count"])
        prefix = str(doc.get("prefix", "bench"))
        authorization = f"Bearer {doc.get('key', 'bench')}"
        base = f"{request.url.scheme}://{request.headers.get('host', 'localhost')}"
        ids: list[str] = []
        for i in range(count):
            body = json.dumps({"model": "veo2", "prompt": f"{prefix} {i}"}).encode()
            reply = emu.handle_create(UNIVERSAL_PATH, authorization, body, base)
            if reply.status >= 300:
                return Response(reply.body, status_code=reply.status)
            ids.append(str(reply.json()["id"]))
        return Response(json.dumps({"ids": ids}), media_type="application/json")

    emu.app.router.routes.insert(0, Route(PRECREATE_PATH, precreate, methods=["POST"]))


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator (with the precreate hook) until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._emuserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config-json", default=None)
    args, _ = parser.parse_known_args(argv)
    config = (
        EmulatorConfig.model_validate_json(args.config_json)
        if args.config_json
        else EmulatorConfig()
    )
    emu = Emulator(config)
    _install_precreate(emu)
    _install_events(emu)

    def announce(url: str) -> None:
        print(URL_LINE_PREFIX + url, flush=True)

    serve(emulator=emu, host=args.host, port=args.port, on_started=announce)
    return 0


class BenchEmulatorProcess(EmulatorProcess):
    """:class:`~veo_async.emulator.EmulatorProcess` running this module instead of the CLI."""

    def command(self) -> list[str]:
        """``python -m benchmarks._emuserver --port 0 [--config-json ...]``."""
        cmd = [self.python, "-m", "benchmarks._emuserver", "--host", self.host, "--port", "0"]
        if self.config is not None:
            cmd += ["--config-json", self.config.model_dump_json()]
        return cmd + self.args

    def precreate(self, count: int, prefix: str, key: str = "bench") -> list[str]:
        """Create ``count`` veo2 generations in the server process; returns their ids."""
        body = {"count": count, "prefix": prefix, "key": key}
        doc = self._request("POST", PRECREATE_PATH, json=body)
        return [str(x) for x in doc["ids"]]

    def events(self, *, clear: bool = False) -> dict[str, Any]:
        """First API request time and 429 times (wall epoch seconds); optionally clear them."""
        doc: dict[str, Any] = self._request("DELETE" if clear else "GET", EVENTS_PATH)
        return doc


if __name__ == "__main__":
    sys.exit(main())
