"""veo_async.testing: the scripted fake, the in-process emulator, the no-waiting switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from veo_async import (
    AuthenticationError,
    BadRequestError,
    GenerationFailedError,
    PermissionDeniedError,
    RateLimitError,
    RetryConfig,
)
from veo_async._timing import waiting_disabled
from veo_async.testing import Script, ScriptedVeoAPI, emulated, no_waiting

pytestmark = pytest.mark.anyio


def test_no_waiting_restores_previous() -> None:
    """no_waiting() switches waits off inside the block and restores the setting after."""
    assert not waiting_disabled()
    with no_waiting():
        assert waiting_disabled()
    assert not waiting_disabled()


async def test_scripted_lifecycles() -> None:
    """Scripted rules decide each job: completes after N polls, fails, no video."""
    api = ScriptedVeoAPI()
    api.script("slow", polls=4)
    api.script("dragon", outcome="error", error="content policy")
    api.script("empty", outcome="no_video")
    seen: list[str] = []
    with no_waiting():
        async with api.client() as client:
            g = await client.generate(
                prompt="a slow snail", on_update=lambda g: seen.append(str(g.status))
            )
            assert g.succeeded
            with pytest.raises(GenerationFailedError, match="content policy"):
                await client.generate(prompt="a dragon")
            with pytest.raises(GenerationFailedError, match="without a video"):
                await client.generate(prompt="empty room")
    assert seen == ["queued", "queued", "generating", "generating", "completed"]
    assert api.jobs[g.id].polls == 4
    assert [b["prompt"] for b in api.created] == ["a slow snail", "a dragon", "empty room"]


@pytest.mark.parametrize(
    ("status", "exc"),
    [(400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError)],
)
async def test_scripted_create_failures(status: int, exc: type[Exception]) -> None:
    """create_status makes a create fail with that status and creates nothing."""
    api = ScriptedVeoAPI(default=Script(create_status=status))
    with no_waiting():
        async with api.client() as client:
            with pytest.raises(exc):
                await client.submit(prompt="x")
    assert api.created == []


async def test_scripted_429_is_retried_then_raised() -> None:
    """A scripted 429 is retried by the client and finally raised as RateLimitError."""
    api = ScriptedVeoAPI(default=Script(create_status=429))
    with no_waiting():
        async with api.client(retry=RetryConfig(max_attempts=1)) as client:
            with pytest.raises(RateLimitError):
                await client.submit(prompt="x")
    assert len(api.requests) >= 2


async def test_scripted_download_has_no_key(tmp_path: Path) -> None:
    """The fake CDN serves the video and would refuse a request carrying the key."""
    api = ScriptedVeoAPI()
    with no_waiting():
        async with api.client() as client:
            g = await client.generate(prompt="x")
            saved = await client.download(g, tmp_path / "x.mp4")
    assert saved.size == len(api.video)
    cdn = [r for r in api.requests if r.url.host == "cdn.veo.test"]
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)


async def test_emulated_generate_and_download(tmp_path: Path) -> None:
    """emulated() gives a client on the in-process emulator: a real MP4 comes back."""
    async with emulated(time_scale=0.001) as service:
        g = await service.client.generate(prompt="a red fox in snow", duration=6)
        saved = await service.client.download(g, tmp_path / "fox.mp4")
        stats = service.stats()
    assert g.succeeded
    assert saved.path.read_bytes()[4:8] == b"ftyp"
    assert stats["generations_created"] == 1
    assert stats["create_requests"] == 1
