"""Fixtures for the emulator tests: a real emulator server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from veo_async.emulator import EmulatorConfig, EmulatorServer


@pytest.fixture
def emulator_server() -> Iterator[EmulatorServer]:
    """A real uvicorn emulator (time scale 0.001, seed 1) on 127.0.0.1 and a free port."""
    with EmulatorServer(EmulatorConfig(time_scale=0.001, seed=1, queue_delay=0.0)) as server:
        yield server
