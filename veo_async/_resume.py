"""Crash-safe resume of a journaled batch: plan a run from the inputs and the journal.

This is the library half of ``veo-async batch`` (the command only parses options, calls these
functions and displays what they return). One run of a journaled batch::

    inputs (validated)  ──prepare_batch()──▶  Plan: what to poll again, what to submit
    BatchResult         ──record_result()──▶  the journal row of that input
    a downloaded video  ──video_filename()──▶ 0001-a-red-fox-in-snow-1a2b3c4d.mp4

:func:`prepare_batch` checks that the journal belongs to these inputs (matched by request
content, never by line) and to this service, recovers a crashed run (an interrupted create
becomes *uncertain*, a lost or corrupt file is downloaded again, stale partial downloads are
removed), applies ``retry_failed`` / ``resubmit_uncertain`` and splits the inputs into ids
to poll again and inputs to submit. Every step is its own function, in the order it runs.

It is a private module on purpose: the public durable batch is ``client.batch(inputs,
store=...)``; this module plans the command line's run over its journal (an
:class:`~veo_async.stores.SQLiteStore` file, batch ``cli``, which that public API can also
resume). Every function is a coroutine: journal calls run on the store's worker thread, file
checks (hashing a downloaded video) in a worker thread too, never on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from ._download import safe_filename
from ._engine import BatchResult
from ._exceptions import (
    CreateOutcomeUnknownError,
    GenerationFailedError,
    NotFoundError,
    VeoError,
)
from ._inputs import ParsedInput, body_hash, redact_body, request_fingerprint
from ._journal import Journal, JournalRow, JournalState

__all__ = [
    "Plan",
    "ResumeError",
    "ResumeOptions",
    "check_file",
    "file_sha256",
    "prepare_batch",
    "record_result",
    "remove_stale_parts",
    "video_filename",
]

#: The target of an in-process emulator (``Settings.target`` of ``--emulate``).
EMULATE_TARGET = "emulate"


class ResumeError(VeoError):
    """The journal in the folder cannot be resumed with these inputs or this service."""


@dataclass(frozen=True)
class ResumeOptions:
    """What a run was asked to do about an existing journal."""

    source: str
    """The input's display name (a path, or ``<stdin>``)."""
    target: str
    """Where generations live: ``emulate`` or ``<base url> <endpoint>``."""
    force: bool = False
    """Resume though the inputs or the base URL changed."""
    resubmit_uncertain: bool = False
    """Submit again the inputs whose create outcome is unknown (may pay twice)."""
    retry_failed: bool = False
    """Submit again the inputs whose generation failed (pays again)."""


@dataclass
class Plan:
    """What this run will do, decided from the inputs and the journal."""

    inputs: list[ParsedInput]
    submit: list[tuple[ParsedInput, int]] = field(default_factory=list)
    """Inputs to submit, with their journal keys."""
    track: list[tuple[ParsedInput, int, str]] = field(default_factory=list)
    """Inputs with a known generation id to poll again: ``(input, key, id)``."""
    lines: dict[int, int] = field(default_factory=dict)
    """The input file's line of each journal key in this run."""
    numbers: dict[int, int] = field(default_factory=dict)
    """Each journal key's position among this run's inputs, from 1 (names the video files)."""
    resumed: bool = False
    notes: list[str] = field(default_factory=list)


def video_filename(number: int, prompt: str, generation_id: str) -> str:
    """``0001-a-red-fox-in-snow-1a2b3c4d.mp4``: input number, prompt words, short id."""
    slug = safe_filename(prompt.lower(), suffix="", max_length=48)
    short = safe_filename(generation_id, suffix="", max_length=8)
    return f"{number:04d}-{slug}-{short}.mp4"


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file, or ``None`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(functools.partial(fh.read, 1024 * 1024), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --------------------------------------------------------------------------- planning


async def prepare_batch(
    journal: Journal, inputs: list[ParsedInput], options: ResumeOptions
) -> Plan:
    """Check the journal against the inputs, recover a crashed run, and plan this run.

    Raises :class:`ResumeError` (nothing changed) when the journal was made from other
    inputs or on another service and ``force`` does not allow it.
    """
    plan = Plan(inputs=inputs)
    fingerprint = request_fingerprint(inputs)
    await _check_fingerprint(journal, fingerprint, options, plan)
    await check_target(journal, options)
    keys = await journal.match_inputs(
        [
            (item.line, redact_body(item.request.to_body()), body_hash(item.request))
            for item in inputs
        ]
    )
    plan.lines = {key: item.line for key, item in zip(keys, inputs, strict=True)}
    plan.numbers = {key: number for number, key in enumerate(keys, start=1)}
    await _recover_interrupted(journal, options, plan)
    await journal.set_meta("fingerprint", fingerprint)
    await journal.set_meta("source", options.source)
    await journal.set_meta("target", options.target)
    if plan.resumed and options.target == EMULATE_TARGET:
        await _forget_emulated(journal)
    await _verify_files(journal, options, plan)
    await _apply_retries(journal, options)
    await _split(journal, keys, plan)
    return plan


async def _check_fingerprint(
    journal: Journal, fingerprint: str, options: ResumeOptions, plan: Plan
) -> None:
    """Refuse (unless ``force``) a journal made from different inputs."""
    stored = await journal.get_meta("fingerprint")
    plan.resumed = stored is not None
    if stored is None or stored == fingerprint:
        return
    made_from = await journal.get_meta("source") or "another file"
    if not options.force:
        same = made_from == options.source
        raise ResumeError(
            f"{journal.folder} already holds a batch made from different inputs "
            f"({len(await journal.rows())} inputs from {made_from}"
            + (", which has changed since" if same else "")
            + f"). Resuming it with {options.source} could mix them up. Use another --out "
            "folder, or pass --force to continue with the new inputs (inputs are matched by "
            "their request, not their line: ones already submitted keep their generations, "
            "new or changed ones are submitted)."
        )
    plan.notes.append(
        f"the inputs changed since the journal was made from {made_from}; "
        f"continuing with {options.source} (--force)"
    )


def _describe_target(target: str) -> str:
    return "the emulator (--emulate)" if target == EMULATE_TARGET else target


def _has_results(row: JournalRow) -> bool:
    """Whether a journal input holds anything a service made (an id, a file, maybe a charge)."""
    if row.generation_id or row.previous_ids or row.file:
        return True
    return row.state not in (JournalState.PENDING, JournalState.REFUSED)


async def check_target(journal: Journal, options: ResumeOptions) -> None:
    """Refuse to mix results of two services (the emulator's samples are not real videos)."""
    target = options.target
    stored = await journal.get_meta("target")
    if stored is None or stored == target:
        return
    if not any(_has_results(row) for row in await journal.rows()):
        return  # nothing was made there yet: nothing to mix up
    folder = journal.folder
    if EMULATE_TARGET in (stored, target):
        raise ResumeError(
            f"{folder} holds results made by {_describe_target(stored)}, but this run "
            f"talks to {_describe_target(target)}. Emulated videos are samples, not videos "
            "of your prompts, so the two never share a folder. Use another --out folder "
            f"(or delete {folder} to start over); --force does not override this."
        )
    if not options.force:
        raise ResumeError(
            f"the generations in {folder} were made on {stored}, but this run "
            f"talks to {target}; their ids would not be found there. Run with the same "
            "--base-url/--endpoint, use another --out folder, or pass --force if this is "
            "the same service under another address."
        )


async def _recover_interrupted(journal: Journal, options: ResumeOptions, plan: Plan) -> None:
    """Creates in flight when the last run died become uncertain; say which inputs left."""
    for key in await journal.recover_interrupted():
        where = f"{options.source}:{plan.lines[key]}" if key in plan.lines else options.source
        plan.notes.append(
            f"{where}: the previous run stopped while its create request was in flight; it "
            "may or may not have been created (uncertain, not resubmitted)"
        )
    gone = [row for row in await journal.rows() if row.line is None]
    if gone:
        plan.notes.append(
            f"{len(gone)} input(s) of the journal are no longer in {options.source}; their "
            "generations and files stay in the folder and the manifest (with no line)"
        )


async def _forget_emulated(journal: Journal) -> None:
    """An in-process emulator dies with its process: its ids cannot be polled again.

    Emulated generations cost nothing, so they are made again.
    """
    for row in await journal.rows():
        if row.state in (JournalState.SUBMITTED, JournalState.COMPLETED, JournalState.UNCERTAIN):
            await journal.reset_for_resubmit(
                row.key, "the emulator of an earlier run is gone; resubmitting (free)"
            )


async def _verify_files(journal: Journal, options: ResumeOptions, plan: Plan) -> None:
    """Download again a file that is missing or corrupt; remove stale partial downloads."""
    for row in await journal.rows():
        if row.state is not JournalState.DOWNLOADED or row.line is None:
            continue
        problem = await anyio.to_thread.run_sync(check_file, journal.folder, row)
        if problem is not None:
            await journal.record_file_lost(row.key, problem)
            plan.notes.append(f"{options.source}:{row.line}: {problem}; downloading it again")
    removed = await anyio.to_thread.run_sync(remove_stale_parts, journal.folder)
    if removed:
        plan.notes.append(f"removed {removed} partial download(s) left by an interrupted run")


async def _apply_retries(journal: Journal, options: ResumeOptions) -> None:
    """``--resubmit-uncertain`` and ``--retry-failed``: make those inputs submittable."""
    for row in await journal.rows():
        if row.line is None:
            continue
        if options.resubmit_uncertain and row.state is JournalState.UNCERTAIN:
            await journal.reset_for_resubmit(row.key, "--resubmit-uncertain")
        elif options.retry_failed and row.state is JournalState.FAILED:
            await journal.reset_for_resubmit(row.key, "--retry-failed")


async def _split(journal: Journal, keys: list[int], plan: Plan) -> None:
    """Inputs never sent are submitted; inputs with a known id are polled again."""
    rows = {row.key: row for row in await journal.rows()}
    for key, item in zip(keys, plan.inputs, strict=True):
        row = rows[key]
        if row.state in (JournalState.PENDING, JournalState.REFUSED):
            plan.submit.append((item, key))
        elif row.state in (JournalState.SUBMITTED, JournalState.COMPLETED):
            assert row.generation_id is not None
            plan.track.append((item, key, row.generation_id))


#: Temporary files of the downloader (``.<name>.<hex>.part``) for this module's video names.
_STALE_PART = re.compile(r"^\.\d{4,}-[A-Za-z0-9._-]*\.mp4\.[0-9a-f]+\.part$")


def remove_stale_parts(folder: Path) -> int:
    """Delete partial downloads a killed run left behind (the journal lock is held)."""
    removed = 0
    for path in folder.glob(".*.part"):
        if _STALE_PART.match(path.name):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def check_file(folder: Path, row: JournalRow) -> str | None:
    """What is wrong with a downloaded input's file (missing, wrong size or hash), or ``None``."""
    if not row.file:
        return "the journal has no file name for this download"
    path = folder / row.file
    if not path.is_file():
        return f"{row.file} is missing"
    if row.size is not None and path.stat().st_size != row.size:
        return f"{row.file} has the wrong size"
    if file_sha256(path) != row.sha256:
        return f"{row.file} does not match its recorded SHA-256"
    return None


# --------------------------------------------------------------------------- results


def journal_key(key: object) -> int:
    """A batch item's key as a journal key (the batch's items are keyed by journal key)."""
    if not isinstance(key, int):
        raise TypeError(f"batch item key must be the input's journal key, got {key!r}")
    return key


async def record_result(
    journal: Journal, result: BatchResult, polls: int | None = None
) -> JournalState:
    """Record how an input ended: completed, failed, refused, uncertain or still running.

    ``polls`` is the number of status requests this run made for it (kept in the event).
    Returns the journal state the input is in now.
    """
    key = journal_key(result.key)
    error = result.error
    generation = result.generation
    gid = result.generation_id or (generation.id if generation is not None else None)
    if result.ok and generation is not None:
        await journal.record_finished(
            key,
            generation_id=generation.id,
            status=str(generation.status),
            video_url=generation.video_url,
            credits=generation.credits_used,
            error=None,
            polls=polls,
        )
    elif isinstance(error, CreateOutcomeUnknownError):
        await journal.record_uncertain(key, str(error))
    elif gid is None:
        await journal.record_refused(key, str(error) if error is not None else "not submitted")
    else:
        await _record_ended(journal, key, gid, result, polls)
    row = await journal.row(key)
    assert row is not None
    return row.state


async def _record_ended(
    journal: Journal, key: int, gid: str, result: BatchResult, polls: int | None
) -> None:
    """An input with a generation id that did not complete: failed, unknown, or running on."""
    error, generation = result.error, result.generation
    if isinstance(error, GenerationFailedError) or (generation is not None and generation.failed):
        failed = error.generation if isinstance(error, GenerationFailedError) else generation
        assert failed is not None
        await journal.record_finished(
            key,
            generation_id=gid,
            status=str(failed.status),
            video_url=None,
            credits=failed.credits_used,
            error=failed.error_message or (str(error) if error else "completed without a video"),
            polls=polls,
        )
    elif isinstance(error, NotFoundError):
        await journal.record_finished(
            key,
            generation_id=gid,
            status=None,
            video_url=None,
            credits=None,
            error=f"the server does not know generation {gid}: {error}",
            polls=polls,
        )
    else:
        await journal.record_still_running(
            key, gid, str(error) if error is not None else "did not finish in this run", polls
        )
