"""Command line of the emulator: ``python -m veo_async.emulator`` (and ``veo-async emulator``).

On startup it prints one line, ``veo-async emulator listening on http://HOST:PORT``, then
serves until SIGINT or SIGTERM and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from ._config import FAULT_KINDS, EmulatorConfig, FaultConfig
from ._server import URL_LINE_PREFIX, serve

__all__ = ["build_parser", "config_from_args", "main"]


def _fault_setting(text: str) -> tuple[str, float]:
    kind, sep, rate = text.partition("=")
    kind = kind.strip().replace("-", "_")
    if not sep or kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"expected KIND=RATE with KIND one of: {', '.join(FAULT_KINDS)}"
        )
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {rate!r}") from None
    return kind, value


def build_parser(prog: str = "python -m veo_async.emulator") -> argparse.ArgumentParser:
    """The argument parser of the emulator command line."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run a local emulator of the AI/ML API's Google Veo video-generation endpoints, "
            "with simulated generation times, limits, credits and fault injection."
        ),
        epilog=f"Fault kinds: {', '.join(FAULT_KINDS)}.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    parser.add_argument(
        "--time-scale",
        type=float,
        help="wall seconds per simulated second (0.01 makes a 45 s job take 0.45 s)",
    )
    parser.add_argument("--seed", type=int, help="seed of every random decision")
    parser.add_argument("--api-key", help="the only accepted key (default: any non-empty key)")
    parser.add_argument(
        "--rate-limit", type=float, help="requests per simulated second per key (creates+polls)"
    )
    parser.add_argument("--rate-limit-burst", type=float, help="token-bucket capacity")
    parser.add_argument("--max-concurrent", type=int, help="generations per key generating at once")
    parser.add_argument("--credits", type=int, help="credit balance per key")
    parser.add_argument(
        "--queue-delay", type=float, help="simulated seconds a job stays queued before starting"
    )
    parser.add_argument(
        "--video-base-url", help="base URL of the CDN in video.url (default: the request's)"
    )
    parser.add_argument(
        "--cdn-host", help="host name for video URLs, with the bound port (e.g. localhost)"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        help="total transient fault rate spread over the transient kinds (FaultConfig.mixed)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault_setting,
        metavar="KIND=RATE",
        help="rate of one fault kind (repeatable; overrides --fault-rate)",
    )
    parser.add_argument(
        "--slow-response-delay", type=float, help="real seconds of a slow_response fault"
    )
    parser.add_argument(
        "--retry-after", type=float, help="simulated Retry-After of an injected 429"
    )
    parser.add_argument(
        "--config-json", help="a whole EmulatorConfig as JSON (the other flags override it)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn log level (default warning)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Build the :class:`EmulatorConfig` the parsed flags describe."""
    data: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    for flag, key in (
        ("time_scale", "time_scale"),
        ("seed", "seed"),
        ("api_key", "api_key"),
        ("rate_limit", "rate_limit"),
        ("rate_limit_burst", "rate_limit_burst"),
        ("max_concurrent", "max_concurrent"),
        ("credits", "credits"),
        ("queue_delay", "queue_delay"),
        ("video_base_url", "video_base_url"),
    ):
        value = getattr(args, flag)
        if value is not None:
            data[key] = value
    faults: dict[str, Any] = dict(data.get("faults") or {})
    if args.fault_rate is not None:
        faults.update(FaultConfig.mixed(args.fault_rate).model_dump())
    for kind, rate in args.fault:
        faults[kind] = rate
    if args.slow_response_delay is not None:
        faults["slow_response_delay"] = args.slow_response_delay
    if args.retry_after is not None:
        faults["retry_after"] = args.retry_after
    data["faults"] = faults
    return EmulatorConfig.model_validate(data)


def main(argv: list[str] | None = None, *, prog: str = "python -m veo_async.emulator") -> int:
    """Run the emulator command line; returns the exit status."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        config = config_from_args(args)
    except (ValueError, ValidationError) as exc:
        print(f"error: invalid emulator configuration: {exc}", file=sys.stderr)
        return 2

    def announce(url: str) -> None:
        print(f"{URL_LINE_PREFIX}{url}", flush=True)

    try:
        serve(
            config,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            cdn_host=args.cdn_host,
            on_started=announce,
        )
    except KeyboardInterrupt:
        return 0
    except SystemExit as exc:  # uvicorn exits with status 3 when it cannot bind
        return exc.code if isinstance(exc.code, int) else 1
    return 0
