"""Running ``veo-async`` as a user does, in a subprocess, for the integration tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    """``python -m veo_async.cli ARGS`` with ``env``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "veo_async.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    """A user error is a message, never a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    """The entries of ``folder/manifest.jsonl``."""
    return [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
