"""``veo-async emulator``: the local API emulator as a server, styled like the other commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from ._common import EXIT_USAGE, echo_err

__all__ = ["emulator"]


class _EmulatorCommand(click.Command):
    """``veo-async emulator``: click options made from the emulator's own argument parser.

    The options are defined once, in ``veo_async.emulator`` (``python -m veo_async.emulator``
    takes the same ones); they are read lazily, so other commands never import the emulator.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """The emulator's options (none when its extra is not installed)."""
        if not self._loaded:
            self._loaded = True
            self.params = _emulator_options()
        return super().get_params(ctx)


def _emulator_options() -> list[click.Parameter]:
    try:
        from ..emulator._cli import build_parser
    except ImportError:
        return []
    import argparse

    params: list[click.Parameter] = []
    for action in build_parser("veo-async emulator")._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        multiple = isinstance(action, argparse._AppendAction)
        kind: Any = {int: click.INT, float: click.FLOAT}.get(action.type, click.STRING)  # type: ignore[call-overload]
        if action.choices:
            kind = click.Choice(list(action.choices))
        elif callable(action.type) and action.type not in (int, float, str):
            kind = _ArgparseType(action.type)
        text = action.help or ""
        params.append(
            click.Option(
                [action.option_strings[-1], action.dest],
                type=kind,
                multiple=multiple,
                default=() if multiple else action.default,
                metavar=action.metavar,
                help=text[:1].upper() + text[1:] + ".",
            )
        )
    return params


class _ArgparseType(click.ParamType):  # type: ignore[type-arg]
    """Checks a value with an argparse ``type=`` function; keeps the text (a usage error)."""

    name = "text"

    def __init__(self, check: Callable[[str], Any]) -> None:
        self.check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Return ``value`` unchanged if ``check`` accepts it."""
        import argparse

        try:
            self.check(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            self.fail(str(exc), param, ctx)
        return value


def _emulator_argv(values: dict[str, Any]) -> list[str]:
    """The emulator's argv for the parsed click values (``--flag value``; repeatable ones)."""
    argv: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None:
                argv += [flag, str(item)]
    return argv


@click.command("emulator", cls=_EmulatorCommand)
def emulator(**kwargs: Any) -> None:
    """Run the local API emulator server (no key, no cost, time-compressed).

    It prints `veo-async emulator listening on http://HOST:PORT` and serves until Ctrl-C.
    Point the SDK or the other commands at it with AIMLAPI_BASE_URL (or --base-url) and,
    when it runs with --time-scale S, the same S as VEO_ASYNC_TIME_SCALE (or --time-scale).

    \b
    Example:
        veo-async emulator --port 8765 --time-scale 0.05
        AIMLAPI_BASE_URL=http://127.0.0.1:8765 AIMLAPI_KEY=anything \\
          veo-async batch examples/prompts.txt --out out/demo --time-scale 0.05
    """
    try:
        from ..emulator import main as emulator_main
    except ImportError:
        echo_err("error: the emulator needs its extra: pip install 'veo-async[emulator]'")
        sys.exit(EXIT_USAGE)
    sys.exit(emulator_main(_emulator_argv(kwargs), prog="veo-async emulator"))
