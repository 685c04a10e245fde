"""``python -m veo_async.cli``: the same as the ``veo-async`` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
