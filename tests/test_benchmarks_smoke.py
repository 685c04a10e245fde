"""Smoke test of the benchmark harness: ``python -m benchmarks.run --quick`` end to end.

No timing assertions: it proves the harness starts the emulator, runs every competitor in every
scenario, computes well-formed figures and renders the report and charts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.competitors import COMPETITORS
from benchmarks.report import FIGURES
from benchmarks.run import CONDITIONS, main, quick_plan

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

_NUMBERS = (
    "makespan_s",
    "status_requests_per_job",
    "requests_per_job",
    "cpu_s_per_1k_jobs",
    "peak_rss_mb",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the quick plan once for every test of this module."""
    out = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--out", str(out)]) == 0
    document: dict[str, Any] = json.loads((out / "results.json").read_text())
    return out, document


def test_quick_run_covers_every_competitor_and_condition(
    quick_run: tuple[Path, dict[str, Any]],
) -> None:
    """Every planned (scenario, competitor) pair ran, and together they cover all of them."""
    _, document = quick_run
    planned = {(c.condition, c.n, name) for c in quick_plan() for name in c.competitors}
    ran = {(c["condition"], c["n"], r["competitor"]) for c in document["cells"] for r in c["runs"]}
    assert ran == planned
    assert {name for _, _, name in ran} == set(COMPETITORS)
    assert {c["condition"] for c in document["cells"]} == set(CONDITIONS)


def test_quick_run_figures_are_well_formed(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """Each run has finite, non-negative figures and consistent job accounting."""
    _, document = quick_run
    for cell in document["cells"]:
        assert cell["time_scale"] > 0
        for run in cell["runs"]:
            for key in _NUMBERS:
                value = run[key]
                assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            assert run["succeeded"] + run["failed"] == run["jobs_run"]
            for key in ("http_429", "lost", "duplicates", "failed"):
                assert isinstance(run[key], int) and run[key] >= 0
            for key, _, _ in FIGURES:
                assert key in run
            if run["competitor"] == "veo_async":
                assert run["succeeded"] > 0
                assert run["duplicates"] == 0


def test_quick_run_renders_the_report(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """The markdown page has one table per scenario and both charts are PNG files."""
    out, document = quick_run
    page = (out / "README.md").read_text()
    assert page.count("| competitor |") == len(document["cells"])
    assert document["command"] in page
    for chart in ("requests_vs_delay.png", "scaling.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    machine = document["machine"]
    assert machine["nproc"] and machine["python"]
