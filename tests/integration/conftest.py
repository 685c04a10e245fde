"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .._redis import NO_REDIS_REASON, RedisServer, free_port, redis_server_binary


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF on, fsync always), or skip saying why."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(NO_REDIS_REASON)
    server = RedisServer(binary, tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()
