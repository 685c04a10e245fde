"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)


# The fixtures users get from the opt-in plugin; the project's own tests use them too.
pytest_plugins = ["veo_async.testing.pytest_plugin"]


# Test modules with an expensive module-scoped fixture (the quick benchmark run, a CLI batch
# over sockets). Under pytest-xdist each goes whole to one worker, so its fixture runs once
# (xdist's default `--dist load` may split a module and run it on both), and these go out
# before the single tests, so the longest unit never starts last. (xdist_group marks cannot
# do this here: xdist 3.8 renames item._nodeid, which pytest 9.2 no longer reads.)
WHOLE_MODULES = frozenset(
    {
        "tests/test_benchmarks_smoke.py",
        "tests/test_benchmarks_vs_script.py",
        "tests/test_report.py",
        "tests/integration/test_report_browser.py",
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n N`` (``--dist load``): every test on its own, but WHOLE_MODULES whole, first."""
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist is the caller's choice
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class WholeModulesFirst(LoadScopeScheduling):  # type: ignore[misc]
        """xdist's scope scheduler (largest scopes first) with single tests as scopes."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in WHOLE_MODULES else nodeid

    return WholeModulesFirst(config, log)
