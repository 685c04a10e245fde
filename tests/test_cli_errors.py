"""How the CLI turns the errors that end a command into one paragraph and an exit code."""

from __future__ import annotations

import sys

import pytest

from veo_async._exceptions import ConfigurationError
from veo_async._journal_records import _DiskFull
from veo_async.cli._common import EXIT_FAILED, EXIT_USAGE
from veo_async.cli._errors import execute

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio installs on 3.10
    from exceptiongroup import ExceptionGroup


def _group(*errors: Exception) -> ExceptionGroup[Exception]:
    return ExceptionGroup("unhandled errors in a TaskGroup", list(errors))


def test_two_tasks_failing_on_the_same_full_disk_print_one_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk seen by the result writer and a download worker at once: no traceback."""
    disk = _DiskFull("cannot write the journal: the disk is full")

    async def job() -> int:
        raise _group(_group(disk), _DiskFull("cannot write the journal: the disk is full"))

    with pytest.raises(SystemExit) as exited:
        execute(job)
    assert exited.value.code == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("the disk is full") == 1
    assert "Traceback" not in err


def test_different_user_errors_are_all_printed_with_the_worst_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def job() -> int:
        raise _group(_DiskFull("journal: disk full"), ConfigurationError("no API key"))

    with pytest.raises(SystemExit) as exited:
        execute(job)
    assert exited.value.code == max(EXIT_FAILED, EXIT_USAGE)
    err = capsys.readouterr().err
    assert "journal: disk full" in err and "no API key" in err


def test_a_programming_error_beside_a_user_error_still_propagates() -> None:
    async def job() -> int:
        raise _group(_DiskFull("disk full"), ZeroDivisionError("bug"))

    with pytest.raises(ExceptionGroup) as raised:
        execute(job)
    assert any(isinstance(e, ZeroDivisionError) for e in raised.value.exceptions)
