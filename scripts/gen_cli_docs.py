"""Write docs/cli.md from the command's own --help texts (tests check it is current)."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["generate", "batch", "status", "download", "report", "models", "emulator"]

INTRO = """# CLI reference

`pip install 'veo-async[cli]'` installs the `veo-async` command (add the `emulator` extra for
`--emulate` and `veo-async emulator`). The API key comes from `AIMLAPI_KEY` or
`--api-key-file`, never from a flag, and is never printed. Every command takes `--base-url`
(or `AIMLAPI_BASE_URL`) and `--emulate` (an in-process emulator: no key, no cost).

This page is generated from the command's own help by `python scripts/gen_cli_docs.py`.
"""


def render() -> str:
    """The whole page."""
    from veo_async.cli._app import cli

    runner = CliRunner()
    parts = [INTRO]
    for name in [None, *COMMANDS]:
        args = ["--help"] if name is None else [name, "--help"]
        result = runner.invoke(cli, args, prog_name="veo-async", terminal_width=100)
        title = "veo-async" if name is None else f"veo-async {name}"
        parts.append(f"## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> int:
    """Write the page, or with --check exit 1 when it is stale."""
    target = ROOT / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        return 0 if target.read_text(encoding="utf-8") == text else 1
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
