"""The opt-in pytest plugin's fixtures work as documented."""

from __future__ import annotations

import httpx
import pytest

from veo_async import AsyncVeoClient
from veo_async._timing import waiting_disabled
from veo_async.emulator import EmulatorServer
from veo_async.testing import EmulatedService, ScriptedVeoAPI


@pytest.mark.anyio
async def test_veo_emulated_fixture(veo_emulated: EmulatedService) -> None:
    """veo_emulated gives a client on an in-process emulator whose ledger sees the job."""
    video = await veo_emulated.client.generate(prompt="a plugin fox")
    assert video.succeeded
    assert veo_emulated.stats()["generations_created"] == 1


@pytest.mark.anyio
async def test_veo_scripted_and_no_waiting(
    veo_scripted: ScriptedVeoAPI, veo_no_waiting: None
) -> None:
    """veo_scripted is a fresh fake; veo_no_waiting removes every wait."""
    assert waiting_disabled()
    veo_scripted.script("slow", polls=3)
    async with veo_scripted.client() as client:
        video = await client.generate(prompt="slow snail")
    assert veo_scripted.jobs[video.id].polls == 3


@pytest.mark.anyio
async def test_veo_emulator_server_fixture(veo_emulator_server: EmulatorServer) -> None:
    """veo_emulator_server is a real server on a free loopback port."""
    async with AsyncVeoClient(
        "k", base_url=veo_emulator_server.base_url, time_scale=0.001
    ) as client:
        video = await client.generate(prompt="over real sockets")
    assert video.succeeded
    async with httpx.AsyncClient() as http:
        stats = (await http.get(veo_emulator_server.base_url + "/_emulator/stats")).json()
    assert stats["generations_created"] == 1
