"""What every command shares: connection settings, the API key, the client, errors, output."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import stat
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from .._client import ENDPOINTS, AsyncVeoClient, Endpoint
from .._exceptions import ConfigurationError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "FiniteFloat",
    "Settings",
    "common_options",
    "echo_err",
    "echo_json",
    "open_client",
    "connection_hint",
    "no_key_message",
    "read_api_key",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Default emulator speed for ``--emulate``: a 45 s Veo2 job takes about 0.9 s.
DEFAULT_EMULATE_TIME_SCALE = 0.02

_F = TypeVar("_F", bound=Callable[..., Any])


class FiniteFloat(click.FloatRange):
    """A ``FloatRange`` that also refuses ``nan`` and ``inf`` (a one-line usage error)."""

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Convert like ``FloatRange``; a NaN or infinite value fails."""
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class CliError(Exception):
    """An error to print (without a traceback) before exiting with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Settings:
    """Connection settings every command takes (``--base-url``, ``--endpoint``, ...)."""

    base_url: str | None = None
    endpoint: Endpoint = "universal"
    api_key_file: Path | None = None
    emulate: bool = False
    time_scale: float | None = None
    json_output: bool = False
    verbose: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where generations live: ``emulate`` or ``<base url> <endpoint>`` (for the journal)."""
        if self.emulate:
            return "emulate"
        base = (self.base_url or os.environ.get("AIMLAPI_BASE_URL") or "").rstrip("/")
        return f"{base or 'https://api.aimlapi.com'} {self.endpoint}"


def common_options(func: _F) -> _F:
    """Add the connection options every command takes."""
    options = [
        click.option(
            "--base-url",
            envvar="AIMLAPI_BASE_URL",
            metavar="URL",
            help="API base URL (env AIMLAPI_BASE_URL; default https://api.aimlapi.com).",
        ),
        click.option(
            "--endpoint",
            type=click.Choice(sorted(ENDPOINTS)),
            default="universal",
            show_default=True,
            help="universal: /v2/video/generations; google: /v2/generate/video/google/generation.",
        ),
        click.option(
            "--api-key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="AIMLAPI_KEY_FILE",
            help="Read the API key from this file (default: the AIMLAPI_KEY variable).",
        ),
        click.option(
            "--emulate",
            is_flag=True,
            help="Run against an in-process emulator: no key, no cost, time-compressed.",
        ),
        click.option(
            "--time-scale",
            type=FiniteFloat(min=0.0, min_open=True),
            help=(
                "Emulator speed in wall seconds per simulated second (with --emulate, default "
                f"{DEFAULT_EMULATE_TIME_SCALE}); with --base-url pointing at an emulator, "
                "tells the poller how fast it runs."
            ),
        ),
        click.option(
            "--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout."
        ),
        click.option(
            "-v", "--verbose", count=True, help="Log HTTP activity to stderr (-vv: more)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def settings_from(kwargs: dict[str, Any]) -> Settings:
    """Pop the common options out of a command's keyword arguments."""
    return Settings(
        base_url=kwargs.pop("base_url"),
        endpoint=kwargs.pop("endpoint"),
        api_key_file=kwargs.pop("api_key_file"),
        emulate=kwargs.pop("emulate"),
        time_scale=kwargs.pop("time_scale"),
        json_output=kwargs.pop("json_output"),
        verbose=kwargs.pop("verbose"),
    )


#: The command line being run (set by ``run``), for hints that name a command to type.
ARGV: list[str] = []


def no_key_message(argv: list[str] | None = None) -> str:
    """The no-key error, with the same command plus ``--emulate`` to try without a key."""
    argv = ARGV if argv is None else argv
    if argv and "--emulate" not in argv:
        example = shlex.join(["veo-async", *argv, "--emulate"])
    else:
        example = 'veo-async generate "a red fox running through snow" --emulate'
    return (
        "no API key. Set it in the environment:\n"
        "    export AIMLAPI_KEY=<your key>\n"
        "or put it in a file and pass --api-key-file PATH.\n"
        "To try veo-async without a key (and without spending anything), add --emulate:\n"
        f"    {example}"
    )


def connection_hint(exc: BaseException, settings: Settings) -> str | None:
    """For a connection that could not be made: which URL, and is a server running there?"""
    from .._exceptions import APIConnectionError

    if settings.emulate or not isinstance(exc, APIConnectionError) or exc.request_sent:
        return None
    url = settings.target.rsplit(" ", 1)[0]
    return (
        f"could not connect to {url}. Is a server running there? Check --base-url (or "
        "AIMLAPI_BASE_URL); to start a local emulator: veo-async emulator --port 8765"
    )


def _warn_if_shared(path: Path) -> None:
    """Warn on stderr when the key file can be read by its group or by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it reports the problem
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        who = " and ".join(
            w
            for w, bit in (("its group", stat.S_IRGRP), ("other users", stat.S_IROTH))
            if mode & bit
        )
        echo_err(
            f"warning: the API key file {path} can be read by {who} "
            f"(mode {stat.S_IMODE(mode):04o}); restrict it with: chmod 600 {path}"
        )


def read_api_key(api_key_file: Path | None) -> str:
    """The API key from ``--api-key-file`` or ``AIMLAPI_KEY``; never echoed in messages."""
    if api_key_file is not None:
        _warn_if_shared(api_key_file)
        try:
            key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(
                f"cannot read the API key file {api_key_file}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise CliError(f"the API key file {api_key_file} is not text") from None
        if not key:
            raise CliError(f"the API key file {api_key_file} is empty")
        return key
    key = os.environ.get("AIMLAPI_KEY", "").strip()
    if not key:
        raise CliError(no_key_message())
    return key


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[AsyncVeoClient]:
    """The client the settings describe: the real API, another server, or an emulator."""
    if settings.emulate:
        try:
            from ..testing import emulated
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise CliError(
                "--emulate needs the emulator extra: pip install 'veo-async[emulator]'"
            ) from None
        scale = settings.time_scale or DEFAULT_EMULATE_TIME_SCALE
        try:
            context = emulated(time_scale=scale, endpoint=settings.endpoint)
            async with context as service:
                yield service.client
        except ImportError as exc:
            raise CliError(f"--emulate is not available: {exc}") from None
        return
    key = read_api_key(settings.api_key_file)
    try:
        client = AsyncVeoClient(
            key,
            base_url=settings.base_url,
            endpoint=settings.endpoint,
            time_scale=settings.time_scale,
        )
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    async with client:
        yield client


def echo_err(message: str) -> None:
    """A human message on stderr."""
    click.echo(message, err=True)


def echo_json(value: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def stderr_is_tty() -> bool:
    """Whether stderr is an interactive terminal (live displays only then)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(verbose: int) -> None:
    """``-v``: log the SDK's requests at INFO, ``-vv``: at DEBUG, on stderr."""
    if verbose <= 0:
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("veo_async")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
