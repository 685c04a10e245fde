"""``python -m veo_async.emulator``: run the emulator server (see ``--help``)."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
