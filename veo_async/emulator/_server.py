"""Running the emulator over real sockets: serve(), EmulatorServer and EmulatorProcess.

The server is uvicorn with its h11 protocol, subclassed so each request scope carries the
asyncio transport (``scope["extensions"][TRANSPORT_EXTENSION]``); the app uses it to reset
connections and cut downloads short (see ``_app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ._app import TRANSPORT_EXTENSION, Receive, Scope, Send
from ._config import EmulatorConfig
from ._state import Emulator

__all__ = ["URL_LINE_PREFIX", "EmulatorProcess", "EmulatorProtocol", "EmulatorServer", "serve"]

URL_LINE_PREFIX = "veo-async emulator listening on "
"""The startup line printed by the command line, followed by the base URL."""

_URL_LINE = re.compile(re.escape(URL_LINE_PREFIX) + r"(\S+)")


class EmulatorProtocol(H11Protocol):
    """uvicorn's h11 protocol, passing the connection's transport to the app in the scope."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        inner = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            extensions = dict(scope.get("extensions") or {})
            extensions[TRANSPORT_EXTENSION] = self.transport
            scope["extensions"] = extensions
            await inner(scope, receive, send)

        self.app = app


def _format_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """uvicorn server that reports its bound URL and exits quietly on SIGINT/SIGTERM."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self.port: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers and self.servers[0].sockets:
            self.port = int(self.servers[0].sockets[0].getsockname()[1])
            if self._on_started is not None:
                self._on_started(self.config.host, self.port)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's own, do not re-raise the signal after a graceful shutdown: the
        # command line should exit with status 0 on SIGINT and SIGTERM.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=EmulatorProtocol,
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
        server_header=False,
    )


def serve(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    emulator: Emulator | None = None,
    log_level: str = "warning",
    cdn_host: str | None = None,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve the emulator with uvicorn until SIGINT/SIGTERM (blocking).

    ``port=0`` picks a free port; ``on_started`` receives the bound base URL. With
    ``cdn_host`` the video URLs use that host name and the bound port (e.g. API on
    ``127.0.0.1``, CDN on ``localhost``).
    """
    emu = emulator if emulator is not None else Emulator(config)

    def started(bound_host: str, bound_port: int) -> None:
        if cdn_host is not None:
            emu.configure(video_base_url=_format_url(cdn_host, bound_port))
        if on_started is not None:
            on_started(_format_url(bound_host, bound_port))

    server = _Server(_uvicorn_config(emu.app, host, port, log_level), on_started=started)
    server.run()


class EmulatorServer:
    """A real emulator server on a loopback port, in a background thread.

    Use as a context manager::

        with EmulatorServer(EmulatorConfig(time_scale=0.01)) as server:
            httpx.get(server.base_url + "/_emulator/stats")
            server.emulator.ledger.generations_created
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_host: str | None = None,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
    ) -> None:
        """Prepare a server (started by ``__enter__`` or :meth:`start`)."""
        self.emulator: Emulator = emulator if emulator is not None else Emulator(config)
        """The served emulator: its ledger, config and controls, in process."""
        self.host = host
        self._port = port
        self._cdn_host = cdn_host
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None or self._server.port is None:
            raise RuntimeError("the emulator server is not running")
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return _format_url(self.host, self.port)

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + path

    def start(self) -> EmulatorServer:
        """Start uvicorn in a daemon thread and wait until it listens."""
        if self._server is not None:
            raise RuntimeError("already started")
        config = _uvicorn_config(self.emulator.app, self.host, self._port, self._log_level)
        server = _Server(config)
        self._server = server
        thread = threading.Thread(target=server.run, name="veo-emulator", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while server.port is None:
            if not thread.is_alive():
                self._server = None
                raise RuntimeError("the emulator server failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator server did not start in time")
            time.sleep(0.005)
        if self._cdn_host is not None:
            self.emulator.configure(video_base_url=_format_url(self._cdn_host, server.port))
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Convenience controls (the same as calling them on ``self.emulator``).

    def configure(
        self, patch: Mapping[str, Any] | None = None, /, **changes: Any
    ) -> EmulatorConfig:
        """Patch the running emulator's config (see :meth:`Emulator.configure`)."""
        return self.emulator.configure(patch, **changes)

    def set_faults(self, **rates: Any) -> None:
        """Patch fault rates, e.g. ``set_faults(server_error=0.5)``."""
        self.emulator.set_faults(**rates)

    def reset(self) -> None:
        """Forget everything (see :meth:`Emulator.reset`)."""
        self.emulator.reset()

    def restart(self) -> None:
        """Forget the live jobs (see :meth:`Emulator.restart`)."""
        self.emulator.restart()

    def stats(self, *, include_generations: bool = True) -> dict[str, Any]:
        """The ledger snapshot (see :meth:`Emulator.stats`)."""
        return self.emulator.stats(include_generations=include_generations)


class EmulatorProcess:
    """``python -m veo_async.emulator --port 0 ...`` as a subprocess, controlled over HTTP.

    ``config`` is passed whole as ``--config-json``; ``args`` are extra command-line flags.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        cdn_host: str | None = None,
        startup_timeout: float = 30.0,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare the subprocess (started by ``__enter__`` or :meth:`start`)."""
        self.config = config
        self.args = list(args)
        self.host = host
        self.cdn_host = cdn_host
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[str] | None = None
        self._base_url: str | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self.output: list[str] = []
        """Every stdout line of the subprocess so far."""

    @property
    def base_url(self) -> str:
        """The base URL the subprocess printed."""
        if self._base_url is None:
            raise RuntimeError("the emulator process is not running")
        return self._base_url

    def command(self) -> list[str]:
        """The command line that :meth:`start` runs."""
        cmd = [self.python, "-m", "veo_async.emulator", "--host", self.host, "--port", "0"]
        if self.config is not None:
            cmd += ["--config-json", self.config.model_dump_json()]
        if self.cdn_host is not None:
            cmd += ["--cdn-host", self.cdn_host]
        return cmd + self.args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        package_root = str(Path(__file__).resolve().parents[2])
        current = env.get("PYTHONPATH")
        env["PYTHONPATH"] = package_root + (os.pathsep + current if current else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def start(self) -> EmulatorProcess:
        """Start the subprocess and wait for its URL line."""
        if self.process is not None:
            raise RuntimeError("already started")
        process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self._environment(),
        )
        self.process = process
        reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._reader = reader
        reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while self._base_url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError("the emulator process did not print its URL in time")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.stop()
                raise RuntimeError(f"the emulator process exited with status {code}")
            self.output.append(line)
            match = _URL_LINE.search(line)
            if match:
                self._base_url = match.group(1)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Send SIGTERM, wait (SIGKILL after ``timeout``) and return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()
        self.process = None
        self._base_url = None
        return process.returncode

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.base_url + path, timeout=30.0, **kwargs)
        response.raise_for_status()
        return response.json()

    def stats(self, *, include_generations: bool = True) -> dict[str, Any]:
        """``GET /_emulator/stats``: the ledger snapshot."""
        params = {} if include_generations else {"generations": "0"}
        result: dict[str, Any] = self._request("GET", "/_emulator/stats", params=params)
        return result

    def configure(
        self, patch: Mapping[str, Any] | None = None, /, **changes: Any
    ) -> dict[str, Any]:
        """``POST /_emulator/config``: patch the config; returns the new config."""
        body = {**(patch or {}), **changes}
        result: dict[str, Any] = self._request("POST", "/_emulator/config", json=body)
        return result

    def set_faults(self, **rates: Any) -> dict[str, Any]:
        """Patch fault rates over HTTP."""
        return self.configure(faults=rates)

    def reset(self) -> None:
        """``POST /_emulator/reset``."""
        self._request("POST", "/_emulator/reset")

    def restart(self) -> None:
        """``POST /_emulator/restart``: forget the live jobs."""
        self._request("POST", "/_emulator/restart")
