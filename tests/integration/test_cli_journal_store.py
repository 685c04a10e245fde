"""The CLI journal is an SQLiteStore (batch ``cli``): ``veo-async status --store`` reads a plain
``veo-async batch --out DIR`` run, and the library's ``client.batch(inputs, store=...)`` takes
the batch over and finishes it without paying twice. The emulator server's ledger is the truth.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from veo_async import AsyncVeoClient, BatchResult, StoreOptions
from veo_async._inputs import body_hash, load_inputs, redact_body, request_fingerprint
from veo_async._journal import CLI_BATCH, JOURNAL_NAME
from veo_async.emulator import EmulatorConfig, EmulatorServer

from .._cli import no_traceback, read_manifest, run_cli
from ..test_journal import OLD_TABLES

pytestmark = pytest.mark.slow

TIME_SCALE = 0.005
KEY = "sk-journal-store-SECRET-77"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """The emulator as a real server on loopback."""
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=5)) as running:
        yield running


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["AIMLAPI_KEY"] = KEY
    env.pop("VEO_API_KEY", None)
    return env


def _prompts(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    prompts = [f"journal store scene {i}: a kite over dunes" for i in range(n)]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n")
    return path, prompts


def _batch(path: Path, out: Path, server: EmulatorServer, *extra: str) -> list[str]:
    return [
        "batch",
        str(path),
        "--out",
        str(out),
        "--base-url",
        server.base_url,
        "--time-scale",
        str(TIME_SCALE),
        *extra,
    ]


def _ledger(server: EmulatorServer) -> Counter[str]:
    return Counter(g["prompt"] for g in server.stats()["generations"])


def test_status_store_shows_a_plain_cli_batch(tmp_path: Path, server: EmulatorServer) -> None:
    """A batch without --store prints its journal's store URL and batch id; `veo-async status
    --store URL --batch-id cli` then shows every input by state (2 made, 2 never sent)."""
    path, _ = _prompts(tmp_path, 4)
    out = tmp_path / "out"
    first = run_cli(*_batch(path, out, server, "--max-generations", "2", "--json"), env=_env())
    no_traceback(first)
    url = "sqlite://" + str((out / JOURNAL_NAME).resolve())
    assert f"veo-async status --store {url} --batch-id cli" in first.stderr
    assert json.loads(first.stdout)["store"] == {"url": url, "batch_id": CLI_BATCH}
    status = run_cli("status", "--store", url, "--batch-id", CLI_BATCH, "--json", env=_env())
    no_traceback(status)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["batch_id"], shown["jobs"]) == ("cli", 4)
    assert shown["states"] == {"downloaded": 2, "pending": 2}
    assert server.stats(include_generations=False)["generations_created"] == 2


async def _library_run(path: Path, out: Path, server: EmulatorServer) -> list[BatchResult]:
    """What a library user runs on the CLI's journal: the same inputs, the same store."""
    requests = [item.request for item in load_inputs(str(path))]
    url = "sqlite://" + str(out / JOURNAL_NAME)
    options = StoreOptions(batch_id=CLI_BATCH, lease_seconds=1.0, idle_poll=0.05)
    async with AsyncVeoClient(KEY, base_url=server.base_url, time_scale=TIME_SCALE) as client:
        with anyio.fail_after(60):
            async with client.batch(requests, store=url, store_options=options) as batch:
                return [result async for result in batch]


def test_the_library_resumes_a_cli_batch_without_paying_twice(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """The CLI makes 2 of 4 generations (--max-generations 2); the library batch on its
    journal submits only the 2 never sent and reports the 2 done; a CLI rerun then downloads
    the library's 2 and sends no create. The ledger: each prompt generated exactly once."""
    path, prompts = _prompts(tmp_path, 4)
    out = tmp_path / "out"
    first = run_cli(*_batch(path, out, server, "--max-generations", "2"), env=_env())
    no_traceback(first)
    assert sum(_ledger(server).values()) == 2
    results = anyio.run(_library_run, path, out, server)
    assert sorted(r.index for r in results) == [0, 1, 2, 3]  # every input accounted for
    assert all(r.ok for r in results), [str(r.error) for r in results]
    ledger = _ledger(server)
    assert ledger == Counter(prompts)  # 4 creates in all: none paid twice
    again = run_cli(*_batch(path, out, server, "--json"), env=_env())
    no_traceback(again)
    assert again.returncode == 0, again.stderr
    assert _ledger(server) == ledger  # the rerun only polled and downloaded
    entries = read_manifest(out)
    assert sorted(e["line"] for e in entries) == [1, 2, 3, 4]
    assert {e["state"] for e in entries} == {"downloaded"}
    assert all((out / e["file"]).is_file() for e in entries)
    assert json.loads(again.stdout)["this_run"]["submitted"] == 0


async def _submit(server: EmulatorServer, requests: list[Any]) -> list[str]:
    async with AsyncVeoClient(KEY, base_url=server.base_url, time_scale=TIME_SCALE) as client:
        return [(await client.submit(request)).id for request in requests]


def test_a_folder_made_by_the_old_journal_resumes_without_paying_twice(
    tmp_path: Path, server: EmulatorServer
) -> None:
    """A folder whose journal has the old tables (schema 2: two inputs submitted with known
    ids, one never sent): the CLI migrates it, polls the two ids, submits only the third, and
    `status --store` then reads the migrated file. The ledger: each prompt created once."""
    path, prompts = _prompts(tmp_path, 3)
    inputs = load_inputs(str(path))
    ids = anyio.run(_submit, server, [item.request for item in inputs[:2]])
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(out / JOURNAL_NAME)
    conn.executescript(OLD_TABLES)
    with conn:
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("schema_version", "2"),
                ("fingerprint", request_fingerprint(inputs)),
                ("source", str(path)),
                ("target", f"{server.base_url} universal"),
            ],
        )
        for n, item in enumerate(inputs):
            known = n < 2
            conn.execute(
                "INSERT INTO inputs (line, occurrence, request, request_sha256, state, "
                "generation_id, intent_at, submitted_at, updated_at) "
                "VALUES (?, 0, ?, ?, ?, ?, 1, 2, 3)",
                (
                    item.line,
                    json.dumps(redact_body(item.request.to_body())),
                    body_hash(item.request),
                    "submitted" if known else "pending",
                    ids[n] if known else None,
                ),
            )
            conn.execute("INSERT INTO events (at, key, event) VALUES (1, ?, 'intent')", (n + 1,))
    conn.close()
    result = run_cli(*_batch(path, out, server, "--json"), env=_env())
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert _ledger(server) == Counter(prompts)  # the third only: none paid twice
    summary = json.loads(result.stdout)
    assert (summary["resumed"], summary["this_run"]["submitted"]) == (True, 1)
    entries = read_manifest(out)
    assert [e["generation_id"] for e in entries][:2] == ids
    assert {e["state"] for e in entries} == {"downloaded"}
    url = summary["store"]["url"]
    status = run_cli("status", "--store", url, "--batch-id", CLI_BATCH, "--json", env=_env())
    assert json.loads(status.stdout)["states"] == {"downloaded": 3}
