"""Smoke test of ``python -m benchmarks.vs_script`` (the hand-written poller of issue 16).

No timing assertions: it proves the harness runs the ``script`` competitor and veo-async
against the emulator process in every scenario, that the script never pays twice, and that
the page and JSON carry every figure (p99 and paid-but-not-started included).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.vs_script import main, paid_not_started_max, render

_SIZE = 8


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run 8 jobs per scenario and client once, at time scale 0.02 (a few seconds each)."""
    out = tmp_path_factory.mktemp("vs")
    argv = [
        "--sizes",
        str(_SIZE),
        "--scenarios",
        "limits,rate,faults",
        "--clients",
        "script,veo_async",
        "--scale",
        "0.02",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    document: dict[str, Any] = json.loads((out / "vs-script.json").read_text())
    return out, document


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_scenario_and_client_ran_and_nothing_was_paid_twice(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    """Each (scenario, client) has a run; no prompt was billed twice; every input is counted."""
    _, document = tiny_run
    ran = {(c["scenario"], r["competitor"]) for c in document["cells"] for r in c["runs"]}
    assert ran == {(s, c) for s in ("limits", "rate", "faults") for c in ("script", "veo_async")}
    for cell in document["cells"]:
        for run in cell["runs"]:
            assert run["duplicates"] == 0
            assert run["generations_billed"] <= _SIZE
            assert run["succeeded"] + run["not_delivered"] == _SIZE
            assert 0 <= run["held_back_max"] <= run["paid_not_started_max"] <= _SIZE
            for key in ("makespan_s", "status_requests_per_job", "client_cpu_share"):
                assert math.isfinite(run[key]) and run[key] >= 0
            assert 0 <= run["http_429_after_burst"] <= run["http_429"]
            if cell["scenario"] != "faults":
                assert run["succeeded"] == _SIZE
                assert run["p99_delay_s"] is not None and run["p99_delay_s"] >= 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_page_has_the_p99_column_and_one_row_per_run(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    """The Markdown page shows the command, the p99 column and one table row per run."""
    out, document = tiny_run
    page = (out / "vs-script.md").read_text()
    assert "| p99 delay s |" in page
    assert document["commands"][0] in page
    runs = sum(len(c["runs"]) for c in document["cells"])
    assert sum(1 for line in page.splitlines() if line.startswith(f"| rate | {_SIZE} |")) == 2
    assert sum(1 for line in page.splitlines() if line.startswith("| ")) == runs + 1


def test_paid_not_started_counts_the_queue_at_its_peak() -> None:
    """Three jobs paid at t=0, started at 1, 2 and never: peak 3; past a 1.5 s grace: 2."""
    records: list[dict[str, Any]] = [
        {"created_at": 0.0, "started_at": 1.0},
        {"created_at": 0.0, "started_at": 2.0},
        {"created_at": 0.0, "started_at": None},
        {"created_at": 5.0, "started_at": 5.0},
    ]
    assert paid_not_started_max(records) == 3
    assert paid_not_started_max(records, grace=1.5) == 2
    assert paid_not_started_max([]) == 0


def test_a_cell_of_another_seed_is_marked_in_the_table_and_notes(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    """A cell run with ``--seeds`` other than the default shows its seed on its rows and notes,
    so two runs of one scenario and size are never mistaken for each other."""
    _, document = tiny_run
    other = copy.deepcopy(document)
    other["cells"][0]["seed"] = 7
    page = render(other)
    scenario, n = other["cells"][0]["scenario"], other["cells"][0]["n"]
    rows = [line for line in page.splitlines() if line.startswith(f"| {scenario} (seed 7) | {n} |")]
    assert len(rows) == len(other["cells"][0]["runs"])
    assert f"- {scenario}/N={n} (scale 0.02, seed 7) " in page
