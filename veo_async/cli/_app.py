"""The click command tree of ``veo-async``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click

from .._exceptions import ConfigurationError, NotFoundError, RequestValidationError, VeoError
from .._inputs import (
    MEDIA_FIELDS,
    check_model,
    describe_field_error,
    media_to_data_uri,
    parse_field_assignment,
)
from .._journal import JournalError, disk_problem
from .._models import MODEL_REQUESTS, VideoRequest, build_request
from ._common import (
    ARGV,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    FiniteFloat,
    Settings,
    common_options,
    configure_logging,
    connection_hint,
    echo_err,
    settings_from,
)

__all__ = ["cli", "run"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Request fields that ``--field`` may not set: they have their own place on the command line.
_FIELD_REFUSED = {
    "prompt": "the prompt comes from the PROMPT argument (generate) or the input file (batch)",
    "model": "use --model (batch: or a model column in the input file)",
    "extra_body": "pass each extra field as its own --field KEY=VALUE",
}

#: Request flags shared by ``generate`` and ``batch`` (as defaults there): (flag name, field).
_REQUEST_FLAGS = (
    ("duration", "duration"),
    ("aspect_ratio", "aspect_ratio"),
    ("seed", "seed"),
    ("negative_prompt", "negative_prompt"),
    ("enhance_prompt", "enhance_prompt"),
    ("image", "image_url"),
    ("tail_image", "tail_image_url"),
    ("last_image", "last_image_url"),
    ("resolution", "resolution"),
    ("generate_audio", "generate_audio"),
)


def request_options(func: _F) -> _F:
    """Add the request-field flags (model, duration, ..., --field KEY=VALUE)."""
    options = [
        click.option(
            "-m",
            "--model",
            metavar="MODEL",
            help="Model id (default veo2, or veo2/image-to-video with --image); "
            "see `veo-async models`.",
        ),
        click.option(
            "--duration", type=int, help="Clip length in seconds (veo2: 5-8; veo3: 4/6/8)."
        ),
        click.option("--aspect-ratio", metavar="RATIO", help="16:9 or 9:16."),
        click.option("--seed", type=int, help="Seed for similar results across runs."),
        click.option("--negative-prompt", metavar="TEXT", help="What to avoid in the video."),
        click.option(
            "--enhance-prompt/--no-enhance-prompt",
            default=None,
            help="Let the service rewrite the prompt (server default: on).",
        ),
        click.option(
            "--image",
            metavar="URL|FILE",
            help="First frame for image-to-video: a URL or a local file (sent as a data URI).",
        ),
        click.option("--tail-image", metavar="URL|FILE", help="Last frame (veo2/image-to-video)."),
        click.option(
            "--last-image", metavar="URL|FILE", help="Last frame (Veo 3.1 first/last frame)."
        ),
        click.option("--resolution", metavar="RES", help="720p/1080p (Veo 3.x; see the model)."),
        click.option(
            "--generate-audio/--no-generate-audio",
            default=None,
            help="Generate an audio track (Veo 3.x; server default: on).",
        ),
        click.option(
            "--field",
            "fields",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any other body field (VALUE parsed as JSON when it is JSON). Repeatable. A "
            "field the model knows (e.g. person_generation) is validated like its flag (batch: "
            "as a default, a row's own value wins); an unknown one is sent as-is. prompt and "
            "model are refused.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def request_fields(kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Pop the request flags: ``(model, fields, extra_body)`` (media paths still unresolved).

    ``--field KEY=VALUE``: ``prompt``/``model`` are refused (they would silently replace
    every input's own value after validation); a field some model knows becomes a validated
    request field like its flag (refused when its flag is given too); any other key goes to
    ``extra_body`` and is sent as-is.
    """
    model = kwargs.pop("model")
    fields: dict[str, Any] = {}
    for flag, name in _REQUEST_FLAGS:
        value = kwargs.pop(flag)
        if value is not None:
            fields[name] = value
    known = {name for cls in MODEL_REQUESTS.values() for name in cls.model_fields}
    extra: dict[str, Any] = {}
    for text in kwargs.pop("fields"):
        try:
            key, value = parse_field_assignment(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--field") from None
        if key in _FIELD_REFUSED:
            raise click.BadParameter(
                f"--field {key}=... is not allowed: {_FIELD_REFUSED[key]}", param_hint="--field"
            )
        if key in known:
            if key in fields:
                raise click.BadParameter(
                    f"{key} is given twice (as {_flag_for(key)} and as --field {key}=...)",
                    param_hint="--field",
                )
            fields[key] = value
        else:
            extra[key] = value
    if model is None and "image_url" in fields:
        model = "veo2/image-to-video"
    return model, fields, extra


def _describe_validation(exc: RequestValidationError) -> str:
    lines = [f"  {describe_field_error(err)}" for err in exc.errors]
    if not lines:
        return exc.message
    return "invalid request:\n" + "\n".join(lines)


def _flag_for(field: str) -> str:
    for flag, name in _REQUEST_FLAGS:
        if name == field:
            return "--" + flag.replace("_", "-")
    return field


def _refuse_existing(output: Path | None, overwrite: bool) -> None:
    """Fail before spending anything when the output file exists (and may not be replaced)."""
    if output is not None and not overwrite and output.exists() and not output.is_dir():
        echo_err(f"error: {output} exists; pass --overwrite to replace it (nothing was sent)")
        sys.exit(EXIT_USAGE)


def _unwrap(exc: BaseException) -> BaseException:
    """The single error inside (nested) exception groups from task groups, else ``exc``."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
            exc = inner[0]
        else:
            return exc


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
        return _describe_validation(exc), EXIT_USAGE
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


def _execute(
    job: Callable[[], Awaitable[int]], hint: Any = None, settings: Settings | None = None
) -> None:
    """Run ``job`` on asyncio and exit with its code; print errors without tracebacks."""
    try:
        code = anyio.run(job, backend="asyncio")
    except BaseException as raw:
        described = _describe_failure(_unwrap(raw), settings, hint)
        if described is None:
            raise
        text, code = described
        echo_err(text)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="veo-async", prog_name="veo-async")
def cli() -> None:
    """Generate videos with Google Veo on the AI/ML API, one at a time or in crash-safe batches.

    The API key is read from the AIMLAPI_KEY environment variable (or --api-key-file); add
    --emulate to any command to try it against a local emulator with no key and no cost.
    """


@cli.command()
@click.argument("prompt")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to save the MP4 (a file or a folder; default: <prompt>-<id>.mp4 here).",
)
@request_options
@click.option(
    "--timeout",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Seconds to wait for the generation.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@common_options
def generate(prompt: str, **kwargs: Any) -> None:
    """Generate one video from PROMPT, show its progress, and download it.

    \b
    Example:
        veo-async generate "a red fox running through snow" -o fox.mp4 --duration 6
    """
    settings = settings_from(kwargs)
    configure_logging(settings.verbose)
    model, fields, extra = request_fields(kwargs)
    for name in MEDIA_FIELDS & fields.keys():
        try:
            fields[name] = media_to_data_uri(fields[name], Path.cwd(), field=name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=_flag_for(name)) from None
    try:
        check_model(model or "veo2")
        request: VideoRequest = build_request(
            prompt, model=model or "veo2", extra_body=extra or None, **fields
        )
    except RequestValidationError as exc:
        echo_err(f"error: {_describe_validation(exc)}")
        sys.exit(EXIT_USAGE)
    _refuse_existing(kwargs["output"], kwargs["overwrite"])
    from ._single import InterruptHint, run_generate

    hint = InterruptHint()
    _execute(
        lambda: run_generate(
            settings,
            request,
            output=kwargs["output"],
            overwrite=kwargs["overwrite"],
            timeout=kwargs["timeout"],
            hint=hint,
        ),
        hint,
        settings,
    )


@cli.command()
@click.argument("prompts", metavar="PROMPTS")
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the videos, manifest.jsonl and the resume journal.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "txt", "csv", "tsv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format. auto: .jsonl/.csv/.tsv by name; anything else (stdin, .txt, no "
    "suffix) from the content; input that could be read two ways is refused.",
)
@click.option(
    "--allow-media-outside",
    is_flag=True,
    help="Let the input file name local media files outside its own folder.",
)
@request_options
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="API requests in flight at once.",
)
@click.option(
    "--rate",
    type=FiniteFloat(min=0.0, min_open=True),
    help="Maximum API requests per second (creates and polls together).",
)
@click.option(
    "--download-concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Videos downloaded at once.",
)
@click.option(
    "--job-timeout",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Seconds to wait for each generation (a rerun resumes the ones still running).",
)
@click.option(
    "--max-generations",
    type=click.IntRange(min=0),
    help="Stop submitting after this many new generations (a cost guard).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Resume though the input file changed (inputs are matched by request, not line) or "
    "the base URL changed (never between --emulate and a real service).",
)
@click.option(
    "--resubmit-uncertain",
    is_flag=True,
    help="Submit again the inputs whose create outcome is unknown (may pay twice).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Submit again the inputs whose generation failed (pays again).",
)
@click.option(
    "--credit-budget",
    type=FiniteFloat(min=0.0),
    metavar="CREDITS",
    help="Refuse (before sending anything) a batch whose estimated cost is over CREDITS, "
    "and stop submitting once the credits spent would pass it.",
)
@click.option(
    "--events",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Append one JSON line per job event (submitted, status, succeeded, failed, "
    "downloaded, ...) with its time, input, generation id and request id.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate the inputs, print the estimated cost and stop; nothing is sent.",
)
@click.option(
    "--progress-interval",
    type=FiniteFloat(min=0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines when stderr is not a terminal.",
)
@common_options
def batch(prompts: str, **kwargs: Any) -> None:
    """Generate a video for every input in PROMPTS into a folder; safe to interrupt and rerun.

    PROMPTS is a text file (one prompt a line; blank lines and # comments skipped), a JSON
    Lines, CSV or TSV file (one request a row; any request field as a key or column, the
    prompt in a 'prompt' column), or - for stdin. The format is read from the content, not
    just the name: .jsonl/.csv/.tsv files are parsed as named (a CSV may use , ; tab or |),
    anything else (stdin, .txt, .csv.txt, no suffix; a UTF-8 BOM is fine) is sniffed, and
    input that could be read two ways is refused with the file, the line and the --format
    to pass: a header row or a raw JSON line is never sent as a paid prompt. The flags set
    default request fields; a row's own values win. Local media paths in the file (image_url,
    ...) must lie in the file's own folder unless --allow-media-outside.

    Videos are downloaded as they complete, with manifest.jsonl describing every input. A
    journal in the folder makes reruns resume: known generations are polled again, missing
    downloads fetched, and nothing is submitted twice. Inputs are matched to the journal by
    their request, never by line number, so after an edit (with --force) only new or
    changed prompts are submitted. A folder made with --emulate never mixes with real
    results (nor the other way round). A failed download fails only its input (the rerun
    fetches it); a full disk stops submitting and never loses a generation id. Ctrl-C stops
    submitting and exits cleanly (press it again to quit at once).

    \b
    Example:
        veo-async batch examples/prompts.txt --out out/demo --emulate
    """
    settings = settings_from(kwargs)
    configure_logging(settings.verbose)
    model, fields, extra = request_fields(kwargs)
    from ._batch import BatchOptions, run_batch_command

    options = BatchOptions(
        prompts=prompts,
        out=kwargs["out"],
        fmt=kwargs["fmt"],
        allow_media_outside=kwargs["allow_media_outside"],
        model=model,
        defaults=fields,
        extra_body=extra,
        concurrency=kwargs["concurrency"],
        rate=kwargs["rate"],
        download_concurrency=kwargs["download_concurrency"],
        job_timeout=kwargs["job_timeout"],
        max_generations=kwargs["max_generations"],
        credit_budget=kwargs["credit_budget"],
        events=kwargs["events"],
        force=kwargs["force"],
        resubmit_uncertain=kwargs["resubmit_uncertain"],
        retry_failed=kwargs["retry_failed"],
        dry_run=kwargs["dry_run"],
        progress_interval=kwargs["progress_interval"],
        argv=list(_ARGV),
    )
    _execute(lambda: run_batch_command(settings, options), settings=settings)


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@common_options
def status(ids: Sequence[str], **kwargs: Any) -> None:
    """Show the status of one or more generations."""
    settings = settings_from(kwargs)
    configure_logging(settings.verbose)
    from ._single import run_status

    _execute(lambda: run_status(settings, ids), settings=settings)


@cli.command()
@click.argument("generation_id", metavar="ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to save the MP4 (a file or a folder; default: <id>.mp4 here).",
)
@click.option("--wait", is_flag=True, help="Wait for the generation if it is still running.")
@click.option(
    "--timeout",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@common_options
def download(generation_id: str, **kwargs: Any) -> None:
    """Download the video of generation ID."""
    settings = settings_from(kwargs)
    configure_logging(settings.verbose)
    _refuse_existing(kwargs["output"], kwargs["overwrite"])
    from ._single import run_download

    _execute(
        lambda: run_download(
            settings,
            generation_id,
            output=kwargs["output"],
            overwrite=kwargs["overwrite"],
            wait=kwargs["wait"],
            timeout=kwargs["timeout"],
        ),
        settings=settings,
    )


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


@cli.command(cls=_EmulatorCommand)
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


@cli.command()
@common_options
def models(**kwargs: Any) -> None:
    """List the model ids the SDK validates requests for, with their fields."""
    settings = settings_from(kwargs)
    table = []
    for model_id, cls in sorted(MODEL_REQUESTS.items()):
        fields = [n for n in cls.model_fields if n not in {"model", "prompt", "extra_body"}]
        table.append({"model": model_id, "request_class": cls.__name__, "fields": fields})
    if settings.json_output:
        from ._common import echo_json

        echo_json(table)
        return
    for row in table:
        click.echo(f"{row['model']:<48} {', '.join(row['fields'])}")


from ._report import report as _report_command  # noqa: E402 - `veo-async report`

cli.add_command(_report_command)


_ARGV = ARGV


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run(argv: list[str]) -> None:
    """Run the command line with ``argv`` (exits)."""
    _ARGV[:] = argv
    try:
        cli.main(args=argv, prog_name="veo-async")
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            # Interrupted, and everything is recorded: leave now. Interpreter shutdown resets
            # signal handlers, so another Ctrl-C during it would end the process "killed by
            # SIGINT" instead of with status 130.
            _exit_now(EXIT_INTERRUPTED)
        raise
    except KeyboardInterrupt:
        _exit_now(EXIT_INTERRUPTED)
