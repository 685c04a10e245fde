"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)


# The fixtures users get from the opt-in plugin; the project's own tests use them too.
pytest_plugins = ["veo_async.testing.pytest_plugin"]
