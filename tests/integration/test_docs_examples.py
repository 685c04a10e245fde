"""Every ```python example in README.md and docs/ runs, against the emulator as a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo_async.emulator import EmulatorConfig, EmulatorServer

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TIME_SCALE = 0.002


def _examples() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if "benchmarks" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for n, match in enumerate(BLOCK.finditer(text), 1):
            found.append((f"{path.relative_to(ROOT)}#{n}", match.group(1)))
    return found


EXAMPLES = _examples()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=3)) as srv:
        yield srv


def test_docs_have_examples() -> None:
    """The docs carry runnable examples (so the test below is not vacuous)."""
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_example_runs(where: str, code: str, server: EmulatorServer, tmp_path: Path) -> None:
    """The example exits 0 against the emulator (no key, no network, time compressed)."""
    env = {
        **os.environ,
        "AIMLAPI_KEY": "docs-example-key",
        "AIMLAPI_BASE_URL": server.base_url,
        "VEO_ASYNC_TIME_SCALE": str(TIME_SCALE),
        "PYTHONPATH": str(ROOT),
    }
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "docs-example-key" not in proc.stdout + proc.stderr
