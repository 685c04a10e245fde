"""``veo-async batch``: many inputs, bounded, journaled, resumable, downloaded as they finish.

The flow of one run, each step a library call; this module only wires them and displays::

    read + validate every input (nothing sent if any is bad)    veo_async._inputs.load_inputs
      -> estimate the cost; --dry-run stops here                 veo_async._pricing
      -> open the journal in --out, check it belongs to these inputs, recover a crashed run,
         plan: poll known ids again, download missing files,     veo_async._resume.prepare_batch
         submit never-submitted inputs
      -> Batch (engine) ─▶ journal (observer) ─▶ downloads       cli._run.execute
      -> summary + manifest.jsonl (rewritten from the journal)   cli._display.summarize
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from .._client import AsyncVeoClient
from .._inputs import (
    MEDIA_FIELDS,
    InputError,
    ParsedInput,
    load_inputs,
    media_to_data_uri,
    redact_body,
)
from .._journal import Journal, JournalError
from .._pricing import UnknownModelPriceError, estimate_credits, format_credits
from .._resume import Plan, ResumeError, ResumeOptions, prepare_batch, video_filename
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Settings,
    connection_hint,
    echo_err,
    echo_json,
    open_client,
    stderr_is_tty,
)
from ._display import summarize
from ._events import EventLog
from ._run import MANIFEST_NAME, RunSettings, RunStats, execute, refresh_manifest

__all__ = ["BatchOptions", "run_batch_command", "video_filename"]


@dataclass
class BatchOptions:
    """Everything the ``batch`` command was asked to do."""

    prompts: str
    out: Path
    fmt: Any = None
    allow_media_outside: bool = False
    model: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 16
    rate: float | None = None
    download_concurrency: int = 4
    job_timeout: float | None = 1000.0
    max_generations: int | None = None
    credit_budget: float | None = None
    events: Path | None = None
    force: bool = False
    resubmit_uncertain: bool = False
    retry_failed: bool = False
    dry_run: bool = False
    progress_interval: float = 10.0
    store: str | None = None
    batch_id: str | None = None
    lease_seconds: float = 30.0
    argv: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The input's display name."""
        return "<stdin>" if self.prompts == "-" else self.prompts

    def resume_command(self) -> str:
        """The command to run again to resume this batch."""
        if self.argv:
            return shlex.join(["veo-async", *self.argv])
        return f"veo-async batch {shlex.quote(self.prompts)} --out {shlex.quote(str(self.out))}"


# --------------------------------------------------------------------------- inputs and cost


def _load(options: BatchOptions) -> list[ParsedInput]:
    """Read and validate every input (a usage error lists every bad line)."""
    defaults: dict[str, Any] = dict(options.defaults)
    for name in MEDIA_FIELDS & defaults.keys():
        try:
            defaults[name] = media_to_data_uri(defaults[name], Path.cwd(), field=name)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if options.model is not None:
        defaults["model"] = options.model
    try:
        return load_inputs(
            options.prompts,
            defaults=defaults,
            extra_body=options.extra_body or None,
            fmt=options.fmt,
            allow_media_outside=options.allow_media_outside,
        )
    except InputError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


@dataclass
class CostEstimate:
    """The estimated credits of some inputs; ``unknown`` are the models with no price."""

    per_input: list[float | None]
    unknown: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> float:
        """The sum over the inputs with a known price."""
        return sum(c for c in self.per_input if c is not None)

    @property
    def largest(self) -> float | None:
        """The largest estimate of one input (the credit guard's per-job estimate)."""
        known = [c for c in self.per_input if c is not None]
        return max(known) if known else None

    def describe(self) -> str:
        """``estimated cost: 1,008,000 credits`` (and which models have no known price)."""
        text = f"estimated cost: {format_credits(self.total)} credits"
        if self.unknown:
            n = sum(self.unknown.values())
            models = ", ".join(sorted(self.unknown))
            text += f" plus {n} input(s) of unknown price ({models}: unknown)"
        return text


def estimate(inputs: list[ParsedInput]) -> CostEstimate:
    """Estimate each input's credits from the price table (``None`` for an unknown model)."""
    result = CostEstimate(per_input=[])
    for item in inputs:
        try:
            result.per_input.append(estimate_credits(item.request))
        except UnknownModelPriceError:
            result.per_input.append(None)
            result.unknown[item.request.model] += 1
    return result


def _check_budget(cost: CostEstimate, budget: float | None, what: str) -> None:
    """Refuse, before anything is sent, an estimate over ``--credit-budget``."""
    if budget is not None and cost.total > budget:
        raise CliError(
            f"{what} is estimated at {format_credits(cost.total)} credits, over "
            f"--credit-budget {format_credits(budget)}; nothing was sent. Raise the budget, "
            "or split the input file."
        )


def _dry_run(settings: Settings, options: BatchOptions, inputs: list[ParsedInput]) -> int:
    cost = estimate(inputs)
    models = Counter(item.request.model for item in inputs)
    if settings.json_output:
        echo_json(
            {
                "source": options.source,
                "inputs": len(inputs),
                "models": dict(models),
                "estimated_credits": cost.total,
                "unknown_price_models": dict(cost.unknown),
                "credit_budget": options.credit_budget,
                "requests": [
                    {
                        "line": i.line,
                        "request": redact_body(i.request.to_body()),
                        "estimated_credits": c,
                    }
                    for i, c in zip(inputs, cost.per_input, strict=True)
                ],
            }
        )
    per_model = ", ".join(f"{n} {m}" for m, n in sorted(models.items()))
    echo_err(
        f"{len(inputs)} valid inputs in {options.source} ({per_model}); {cost.describe()}; "
        "nothing sent"
    )
    _check_budget(cost, options.credit_budget, f"the batch in {options.source}")
    return EXIT_OK


# --------------------------------------------------------------------------- hints


def _looks_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _time_scale_hint(settings: Settings) -> None:
    """A local server (an emulator?) with no time scale: say how to match its speed, once."""
    base = settings.base_url or os.environ.get("AIMLAPI_BASE_URL") or ""
    if settings.emulate or not base or not _looks_local(base):
        return
    if settings.time_scale is not None or os.environ.get("VEO_ASYNC_TIME_SCALE"):
        return
    echo_err(
        f"note: {base} is a local server. If it is the emulator started with --time-scale S, "
        "pass the same --time-scale S here (or set VEO_ASYNC_TIME_SCALE=S); otherwise jobs "
        "are polled at the real service's pace and each is noticed long after it finished."
    )


# --------------------------------------------------------------------------- the run


def _resume_options(settings: Settings, options: BatchOptions) -> ResumeOptions:
    return ResumeOptions(
        source=options.source,
        target=settings.target,
        force=options.force,
        resubmit_uncertain=options.resubmit_uncertain,
        retry_failed=options.retry_failed,
    )


def _run_settings(options: BatchOptions, plan: Plan) -> RunSettings:
    budget = options.credit_budget
    if budget is not None:
        # Only what this run submits is checked (a resume that only polls pays nothing more);
        # the guard's per-job estimate is the largest over all the inputs.
        _check_budget(estimate([item for item, _ in plan.submit]), budget, "what this run submits")
    return RunSettings(
        concurrency=options.concurrency,
        rate=options.rate,
        download_concurrency=options.download_concurrency,
        job_timeout=options.job_timeout,
        max_generations=options.max_generations,
        credit_budget=options.credit_budget,
        estimated_credits_per_job=estimate(plan.inputs).largest if budget is not None else None,
        progress_interval=options.progress_interval,
        live=stderr_is_tty(),
    )


def _announce(plan: Plan, options: BatchOptions) -> None:
    for note in plan.notes:
        echo_err(f"note: {note}")
    if plan.resumed:
        echo_err(
            f"resuming the batch in {options.out}: {len(plan.track)} to poll again, "
            f"{len(plan.submit)} to submit"
        )


def _open_events(options: BatchOptions) -> EventLog:
    events = EventLog(options.events)
    try:
        events.open()
    except OSError as exc:
        raise CliError(
            f"cannot open the event log {options.events}: {exc.strerror or exc}"
        ) from None
    return events


async def _final_manifest(journal: Journal, failure: BaseException | None) -> None:
    """Rewrite the manifest from the journal, also after a crash or an interrupt."""
    with anyio.CancelScope(shield=True):
        try:
            await refresh_manifest(
                journal, journal.folder / MANIFEST_NAME, anyio.CapacityLimiter(1)
            )
        except JournalError as exc:
            if failure is None:
                raise
            echo_err(f"error: {exc}")  # the run's own error follows


async def _run_journaled(
    client: AsyncVeoClient,
    settings: Settings,
    options: BatchOptions,
    inputs: list[ParsedInput],
    journal: Journal,
) -> int:
    stats = RunStats()
    try:
        plan = await prepare_batch(journal, inputs, _resume_options(settings, options))
    except ResumeError as exc:
        raise CliError(str(exc)) from None
    _announce(plan, options)
    run = _run_settings(options, plan)
    events = _open_events(options)
    failure: BaseException | None = None
    try:
        await _final_manifest(journal, None)  # a run killed at once still leaves one
        if plan.track or plan.submit:
            await execute(client, journal, plan, run, stats, events)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        events.close()
        await _final_manifest(journal, failure)
    wanted = set(plan.lines)
    rows = [r for r in await journal.rows() if r.key in wanted]
    summary = summarize(
        rows,
        source=options.source,
        out=options.out,
        resumed=plan.resumed,
        notes=plan.notes,
        stats=stats,
        command=options.resume_command(),
    )
    if settings.json_output:
        echo_json(summary.doc)
    for text in summary.lines:
        echo_err(text)
    hint = connection_hint(stats.connect_error, settings) if stats.connect_error else None
    if hint is not None:
        echo_err(hint)
    return summary.code


async def run_batch_command(settings: Settings, options: BatchOptions) -> int:
    """The ``batch`` command: validate, estimate, plan against the journal, run, report."""
    inputs = await anyio.to_thread.run_sync(functools.partial(_load, options))
    if options.dry_run:
        return _dry_run(settings, options, inputs)
    _time_scale_hint(settings)
    if options.store is not None:
        from ._store import check_store_options, run_store_batch

        check_store_options(options)

        return await run_store_batch(settings, options, inputs, options.store)
    async with open_client(settings) as client:
        try:
            journal = await Journal.open(options.out)
        except JournalError as exc:
            raise CliError(str(exc)) from None
        try:
            return await _run_journaled(client, settings, options, inputs, journal)
        finally:
            await journal.close()  # shielded
