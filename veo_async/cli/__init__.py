"""The ``veo-async`` command: generate, batch, status, download, emulator, models.

Needs the ``cli`` extra (click and rich): ``pip install 'veo-async[cli]'``. Without them the
command prints that hint instead of a traceback, as httpx's command does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

_HINT = (
    "The veo-async command needs the optional dependencies click and rich, which are not "
    "installed.\nInstall them with:  pip install 'veo-async[cli]'"
)


def _missing_dependencies() -> list[str]:
    return [name for name in ("click", "rich") if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``veo-async`` command line (``argv`` defaults to ``sys.argv[1:]``); exits."""
    missing = _missing_dependencies()
    if missing:
        print(f"{_HINT}\n(missing: {', '.join(missing)})", file=sys.stderr)
        sys.exit(1)
    from ._app import run

    run(list(argv) if argv is not None else sys.argv[1:])
