"""pytest fixtures for testing code that uses veo-async.

Enable in your ``conftest.py``::

    pytest_plugins = ["veo_async.testing.pytest_plugin"]

Fixtures (async ones need an async test runner such as anyio's pytest plugin):

* ``veo_no_waiting`` - turns off every SDK wait for the test.
* ``veo_scripted`` - a fresh :class:`~veo_async.testing.ScriptedVeoAPI`.
* ``veo_emulated`` - an :class:`~veo_async.testing.EmulatedService` (in-process emulator and a
  client wired to it), time-compressed.
* ``veo_emulator_server`` - the emulator as a real server on a free loopback port
  (``.base_url``), stopped after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from ._emulated import EmulatedService, emulated
from ._scripted import ScriptedVeoAPI
from ._waiting import no_waiting

if TYPE_CHECKING:
    from ..emulator import EmulatorServer

__all__ = ["veo_emulated", "veo_emulator_server", "veo_no_waiting", "veo_scripted"]


@pytest.fixture
def veo_no_waiting() -> Iterator[None]:
    """No backoff, poll delay or rate-limit pause during the test."""
    with no_waiting():
        yield


@pytest.fixture
def veo_scripted() -> ScriptedVeoAPI:
    """A fresh scripted fake of the API."""
    return ScriptedVeoAPI()


@pytest.fixture
async def veo_emulated() -> AsyncIterator[EmulatedService]:
    """An in-process emulator (time scale 0.001) and a client wired to it."""
    async with emulated(time_scale=0.001) as service:
        yield service


@pytest.fixture
def veo_emulator_server() -> Iterator[EmulatorServer]:
    """The emulator as a real uvicorn server on a free loopback port (time scale 0.001)."""
    from ..emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(time_scale=0.001)) as server:
        yield server
