"""Running a command's coroutine and turning its errors into one paragraph and an exit code
(never a traceback for a user error)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from .._exceptions import ConfigurationError, NotFoundError, RequestValidationError, VeoError
from .._journal import JournalError, disk_problem
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Settings,
    connection_hint,
    echo_err,
)
from ._options import describe_validation

__all__ = ["EMULATE_FORGETS", "execute"]


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups from task groups, or ``[exc]``.

    Two tasks can fail at once for the same reason (a full disk seen by the result writer and
    by a download worker): every leaf is described, not only the first.
    """
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner and all(isinstance(e, BaseException) for e in inner):
        return [leaf for e in inner for leaf in _leaves(e)]
    return [exc]


#: Under --emulate, an id from an earlier command is unknown: say why, and what to do.
EMULATE_FORGETS = (
    "--emulate starts a fresh in-process emulator for each command, which knows no ids "
    "from earlier runs. To keep generations between commands, run a server with "
    "`veo-async emulator --port 8765` and pass --base-url http://127.0.0.1:8765 instead."
)


def _describe_veo_error(exc: VeoError, settings: Settings | None) -> tuple[str, int]:
    """The message and exit code of an SDK error (usage errors exit 2)."""
    if isinstance(exc, ConfigurationError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, RequestValidationError):
        return describe_validation(exc), EXIT_USAGE
    if isinstance(exc, JournalError):
        return str(exc), EXIT_FAILED
    from ._single import describe_error

    text = describe_error(exc)
    if settings is not None:
        hint = connection_hint(exc, settings)
        if hint is not None:
            text = f"{hint}\n({text})"
        elif settings.emulate and isinstance(exc, NotFoundError):
            text = f"{text}\n{EMULATE_FORGETS}"
    return text, EXIT_FAILED


def _describe_failure(
    exc: BaseException, settings: Settings | None, hint: Any
) -> tuple[str, int] | None:
    """What to print for an error that ends a command, or ``None`` to let it propagate."""
    if isinstance(exc, CliError):
        return f"error: {exc.message}", exc.code
    if isinstance(exc, VeoError):
        text, code = _describe_veo_error(exc, settings)
        return f"error: {text}", code
    if isinstance(exc, KeyboardInterrupt):
        return "\n" + (hint.message() if hint is not None else "Interrupted."), EXIT_INTERRUPTED
    if isinstance(exc, sqlite3.Error):
        return f"error: the batch journal failed: {exc}", EXIT_FAILED
    if isinstance(exc, OSError):
        where = Path(exc.filename).parent if exc.filename else Path.cwd()
        return f"error: {disk_problem(where, exc)}", EXIT_FAILED
    return None


def execute(
    job: Callable[[], Awaitable[int]], hint: Any = None, settings: Settings | None = None
) -> None:
    """Run ``job`` on asyncio and exit with its code; print errors without tracebacks."""
    try:
        code = anyio.run(job, backend="asyncio")
    except BaseException as raw:
        described = [_describe_failure(leaf, settings, hint) for leaf in _leaves(raw)]
        if not described or any(d is None for d in described):
            raise
        texts: list[str] = []
        for text, _ in (d for d in described if d is not None):
            if text not in texts:
                texts.append(text)
        code = max(c for _, c in (d for d in described if d is not None))
        echo_err("\n".join(texts))
    sys.exit(code)
