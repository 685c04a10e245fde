"""The click command tree of ``veo-async``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .._exceptions import RequestValidationError
from .._inputs import (
    MEDIA_FIELDS,
    check_model,
    media_to_data_uri,
)
from .._models import MODEL_REQUESTS, VideoRequest, build_request
from ._common import (
    ARGV,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    FiniteFloat,
    common_options,
    configure_logging,
    echo_err,
    settings_from,
)
from ._errors import execute
from ._options import (
    BATCH_RATE_HELP,
    BATCH_STORE_HELP,
    describe_validation,
    flag_for,
    request_fields,
    request_options,
)

__all__ = ["cli", "run"]


def _refuse_existing(output: Path | None, overwrite: bool) -> None:
    """Fail before spending anything when the output file exists (and may not be replaced)."""
    if output is not None and not overwrite and output.exists() and not output.is_dir():
        echo_err(f"error: {output} exists; pass --overwrite to replace it (nothing was sent)")
        sys.exit(EXIT_USAGE)


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
            raise click.BadParameter(str(exc), param_hint=flag_for(name)) from None
    try:
        check_model(model or "veo2")
        request: VideoRequest = build_request(
            prompt, model=model or "veo2", extra_body=extra or None, **fields
        )
    except RequestValidationError as exc:
        echo_err(f"error: {describe_validation(exc)}")
        sys.exit(EXIT_USAGE)
    _refuse_existing(kwargs["output"], kwargs["overwrite"])
    from ._single import InterruptHint, run_generate

    hint = InterruptHint()
    execute(
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
    help=BATCH_RATE_HELP,
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
    help="Refuse (before sending anything) a run whose submissions are estimated over "
    "CREDITS, and stop submitting once the credits this run spends would pass it.",
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
@click.option(
    "--store",
    metavar="URL",
    help=BATCH_STORE_HELP,
)
@click.option(
    "--batch-id",
    metavar="ID",
    help="The batch's name in --store (default: derived from the inputs, so every process "
    "started with the same FILE joins the same batch).",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=FiniteFloat(min=0.0, min_open=True),
    default=30.0,
    show_default=True,
    help="With --store: seconds after which a silent worker's jobs are taken over.",
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
    submitting and exits cleanly (press it again to quit at once). The journal is a job store
    (batch id cli): `veo-async status --store sqlite:///ABS/OUT/.veo-async-journal.sqlite3
    --batch-id cli` shows it, and the library's client.batch(..., store=that URL) resumes it.

    With --store redis://HOST:PORT/DB, start the same command on several processes or machines,
    each with its own --out: they share the batch through Redis, each input is generated once
    across all of them, each process downloads what it finished into its own --out, and a
    process that dies has its jobs taken over by the others after --lease seconds (rerun it
    with the same --out to fetch what it had finished). The batch id is printed and saved in
    --out/batch.json; `veo-async status --store URL --batch-id ID` shows the whole batch.

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
        store=kwargs["store"],
        batch_id=kwargs["batch_id"],
        lease_seconds=kwargs["lease_seconds"],
        argv=list(_ARGV),
    )
    execute(lambda: run_batch_command(settings, options), settings=settings)


@cli.command()
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option(
    "--store",
    metavar="URL",
    help="Show a shared batch instead: its jobs by state and who holds them (needs --batch-id).",
)
@click.option("--batch-id", metavar="ID", help="The batch in --store (see its batch.json).")
@common_options
def status(ids: Sequence[str], **kwargs: Any) -> None:
    """Show the status of one or more generations, or of a whole shared batch (--store)."""
    settings = settings_from(kwargs)
    configure_logging(settings.verbose)
    store, batch_id = kwargs["store"], kwargs["batch_id"]
    if store is not None:
        if ids or not batch_id:
            raise click.UsageError("--store takes --batch-id ID and no generation ids")
        from ._store import run_status_store

        execute(lambda: run_status_store(settings, store, batch_id), settings=settings)
        return
    if not ids:
        raise click.UsageError("give one or more generation ids (or --store URL --batch-id ID)")
    from ._single import run_status

    execute(lambda: run_status(settings, ids), settings=settings)


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

    execute(
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


from ._emulator import emulator as _emulator_command  # noqa: E402 - `veo-async emulator`
from ._report import report as _report_command  # noqa: E402 - `veo-async report`

cli.add_command(_emulator_command)
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
