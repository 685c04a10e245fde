"""VeoClient: the blocking facade runs the async client in a portal thread, loop or no loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo_async import VeoClient
from veo_async.emulator import EmulatorConfig, EmulatorServer
from veo_async.testing import no_waiting


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=0.001, seed=5)) as srv:
        yield srv


def _client(server: EmulatorServer) -> VeoClient:
    return VeoClient("sync-key", base_url=server.base_url, time_scale=0.001)


def test_generate_and_download(server: EmulatorServer, tmp_path: Path) -> None:
    """generate(), get() and download() work without await against a real server."""
    with _client(server) as client:
        video = client.generate(prompt="a kite over the beach")
        assert video.succeeded
        assert client.get(video.id).succeeded
        saved = client.download(video, tmp_path / "kite.mp4")
    assert saved.path.read_bytes()[4:8] == b"ftyp"


def test_batch_is_a_plain_iterator(server: EmulatorServer) -> None:
    """batch() yields every result as a plain iterator; as_completed() resumes ids."""
    prompts = [f"a lantern, take {i}" for i in range(12)]
    with _client(server) as client:
        results = list(client.batch(prompts, max_concurrency=4))
        assert sorted(r.index for r in results) == list(range(12))
        assert all(r.ok for r in results)
        again = list(client.as_completed([r.generation_id or "" for r in results[:3]]))
    assert {r.generation_id for r in again} == {r.generation_id for r in results[:3]}


def test_batch_early_exit_keeps_pending(server: EmulatorServer) -> None:
    """Leaving a with-batch early stops it and pending() lists what still runs."""
    with _client(server) as client, client.batch([f"a heron {i}" for i in range(8)]) as batch:
        first = next(iter(batch))
    assert first.index in range(8)
    assert len(batch.pending()) + len(batch.unsubmitted()) <= 7


def test_works_inside_a_running_event_loop(server: EmulatorServer) -> None:
    """Called from code already running in an event loop (as in Jupyter), it still works."""

    async def notebook_cell() -> bool:
        with _client(server) as client:
            return client.generate(prompt="a notebook fox").succeeded

    assert asyncio.run(notebook_cell())


def test_closed_client_refuses(server: EmulatorServer) -> None:
    """After close(), calls raise a clear error; repr hides the key."""
    client = _client(server)
    assert "sync-key" not in repr(client)
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"), no_waiting():
        client.get("x")


def test_sync_batch_reports_uncertain_and_stop_reason() -> None:
    """SyncBatch exposes uncertain() and stop_reason like Batch: nothing is lost or resent."""
    from tests.hostile import HostileServer, Recorded, Reply, broken_gzip, generation

    def script(req: Recorded) -> Reply:
        if req.json()["prompt"] == "refused":
            return Reply.json({"message": "out of credits"}, status=403)
        return broken_gzip(generation("g1"))

    with HostileServer(script) as server:
        with VeoClient("sync-key", base_url=server.url, time_scale=0.001) as client:
            with client.batch(["a", "b", "refused", "c"], max_concurrency=1) as batch:
                results = list(batch)
            assert {i for i, _ in batch.uncertain()} == {0, 1}
            assert batch.stop_reason == "permission_denied"
            assert {r.index for r in results} >= {0, 1}
        assert server.count("POST") == 3
