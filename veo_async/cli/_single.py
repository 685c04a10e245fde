"""The single-job commands: ``generate``, ``status`` and ``download``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .._download import DownloadedVideo, safe_filename
from .._exceptions import (
    GenerationFailedError,
    NotFoundError,
    VeoError,
    WaitTimeoutError,
)
from .._inputs import redact_body
from .._models import Generation, VideoRequest
from .._pricing import format_credits
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Settings,
    connection_hint,
    echo_err,
    echo_json,
    open_client,
    stderr_is_tty,
)

__all__ = ["generation_json", "run_download", "run_generate", "run_status"]


def generation_json(generation: Generation) -> dict[str, Any]:
    """The fields of a generation people and scripts care about."""
    return {
        "id": generation.id,
        "status": str(generation.status),
        "video_url": generation.video_url,
        "credits": generation.credits_used,
        "error": generation.error_message,
    }


@dataclass
class InterruptHint:
    """What to tell the user if the command is interrupted (filled in as the job advances)."""

    generation_id: str | None = None
    output: Path | None = None

    def message(self) -> str:
        """The hint printed on Ctrl-C."""
        if self.generation_id is None:
            return "Interrupted before a generation was created; nothing was spent."
        target = f" -o {self.output}" if self.output is not None else ""
        return (
            f"Interrupted. Generation {self.generation_id} may still be running (and is paid "
            f"for); fetch it later with:\n    veo-async download {self.generation_id}"
            f"{target} --wait"
        )


class StatusLine:
    """The live ``status · elapsed`` line on stderr (plain lines on status change if no TTY)."""

    def __init__(self, *, live: bool) -> None:
        self.live = live
        self.started = time.monotonic()
        self.status = "submitting"
        self.generation_id: str | None = None
        self._last_printed: str | None = None
        self._status: Any = None

    def __enter__(self) -> StatusLine:
        if self.live:
            from rich.console import Console

            console = Console(stderr=True, highlight=False)
            self._status = console.status(self._text())
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def _text(self) -> str:
        elapsed = time.monotonic() - self.started
        gid = f"  (id {self.generation_id})" if self.generation_id else ""
        return f"{self.status} · {elapsed:.1f} s{gid}"

    def update(self, generation: Generation) -> None:
        """A new state of the generation arrived."""
        self.generation_id = generation.id
        self.status = str(generation.status)
        if self._status is not None:
            self._status.update(self._text())
        elif self.status != self._last_printed:
            self._last_printed = self.status
            echo_err(self._text())

    async def tick(self) -> None:
        """Refresh the elapsed time until cancelled."""
        while True:
            await anyio.sleep(0.1)
            if self._status is not None:
                self._status.update(self._text())


def default_output(request: VideoRequest, generation_id: str) -> Path:
    """``<prompt words>-<short id>.mp4`` in the current folder."""
    slug = safe_filename(request.prompt.lower(), suffix="", max_length=48)
    short = safe_filename(generation_id, suffix="", max_length=8)
    return Path(f"{slug}-{short}.mp4")


def _target(output: Path | None, request: VideoRequest | None, generation: Generation) -> Path:
    if output is None:
        if request is not None:
            return default_output(request, generation.id)
        return Path(safe_filename(generation.id))
    if output.is_dir():
        name = (
            default_output(request, generation.id).name
            if request is not None
            else safe_filename(generation.id)
        )
        return output / name
    return output


def _downloaded_json(video: DownloadedVideo) -> dict[str, Any]:
    return {"file": str(video.path), "size": video.size, "sha256": video.sha256}


async def run_generate(
    settings: Settings,
    request: VideoRequest,
    *,
    output: Path | None,
    overwrite: bool,
    timeout: float | None,
    hint: InterruptHint,
) -> int:
    """Submit, wait with a live status line, download; print where the video went."""
    hint.output = output
    async with open_client(settings) as client:
        line = StatusLine(live=stderr_is_tty())
        with line:
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.tick)
                generation = await client.submit(request)
                hint.generation_id = generation.id
                line.update(generation)
                try:
                    generation = await client.wait(
                        generation,
                        timeout=timeout,
                        expected_seconds=request.expected_seconds(),
                        on_update=line.update,
                    )
                finally:
                    tg.cancel_scope.cancel()
        target = _target(output, request, generation)
        hint.output = target
        video = await client.download(generation, target, overwrite=overwrite)
    elapsed = time.monotonic() - line.started
    if settings.json_output:
        echo_json(
            {
                **generation_json(generation),
                **_downloaded_json(video),
                "request": redact_body(request.to_body()),
                "elapsed": round(elapsed, 3),
            }
        )
    else:
        credits = (
            f", {format_credits(generation.credits_used)} credits"
            if generation.credits_used is not None
            else ""
        )
        echo_err(f"completed in {elapsed:.1f} s{credits} (id {generation.id})")
        echo_err(f"saved {video.size} bytes to {video.path}  (sha256 {video.sha256[:16]}...)")
    return EXIT_OK


async def _look_up(settings: Settings, ids: Sequence[str]) -> dict[str, Generation | VeoError]:
    """Each id's generation, or the error its lookup ended with (concurrently)."""
    results: dict[str, Generation | VeoError] = {}
    async with open_client(settings) as client:

        async def one(gid: str) -> None:
            try:
                results[gid] = await client.get(gid)
            except VeoError as exc:
                results[gid] = exc

        async with anyio.create_task_group() as tg:
            for gid in ids:
                tg.start_soon(one, gid)
    return results


def _status_text(row: dict[str, Any]) -> str:
    """One line of ``status``: id, status, URL, credits, error."""
    if "lookup_error" in row:
        return f"{row['id']}  lookup failed: {row['lookup_error']}"
    parts = [row["id"], row["status"]]
    if row["video_url"]:
        parts.append(row["video_url"])
    if row["credits"] is not None:
        parts.append(f"{format_credits(row['credits'])} credits")
    if row["error"]:
        parts.append(f"error: {row['error']}")
    return "  ".join(str(p) for p in parts)


def _lookup_notes(settings: Settings, errors: list[VeoError]) -> None:
    """Explain lookups that failed for a reason the user can fix (no server, --emulate)."""
    hints = {connection_hint(exc, settings) for exc in errors} - {None}
    for hint in sorted(h for h in hints if h is not None):
        echo_err(f"error: {hint}")
    if settings.emulate and any(isinstance(exc, NotFoundError) for exc in errors):
        from ._errors import EMULATE_FORGETS

        echo_err(f"note: {EMULATE_FORGETS}")


async def run_status(settings: Settings, ids: Sequence[str]) -> int:
    """Look up each id once (concurrently) and print its status."""
    results = await _look_up(settings, ids)
    rows: list[dict[str, Any]] = []
    for gid in ids:
        result = results[gid]
        if isinstance(result, Generation):
            rows.append(generation_json(result))
        else:
            rows.append({"id": gid, "status": None, "lookup_error": str(result)})
    errors = [r for r in results.values() if isinstance(r, VeoError)]
    _lookup_notes(settings, errors)
    if settings.json_output:
        echo_json(rows)
    else:
        import click

        for row in rows:
            click.echo(_status_text(row))
    failed = errors or any(isinstance(r, Generation) and r.failed for r in results.values())
    return EXIT_FAILED if failed else EXIT_OK


async def run_download(
    settings: Settings,
    generation_id: str,
    *,
    output: Path | None,
    overwrite: bool,
    wait: bool,
    timeout: float | None,
) -> int:
    """Download the video of an existing generation (optionally waiting for it first)."""
    async with open_client(settings) as client:
        generation = await client.get(generation_id)
        if not generation.is_terminal:
            if not wait:
                raise CliError(
                    f"generation {generation.id} is {generation.status}, not completed yet; "
                    "add --wait to wait for it",
                    EXIT_FAILED,
                )
            line = StatusLine(live=stderr_is_tty())
            line.update(generation)
            with line:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.tick)
                    try:
                        generation = await client.wait(
                            generation, timeout=timeout, on_update=line.update
                        )
                    finally:
                        tg.cancel_scope.cancel()
        if generation.failed:
            raise GenerationFailedError(
                f"generation {generation.id} failed: "
                f"{generation.error_message or 'completed without a video URL'}",
                generation=generation,
            )
        target = _target(output, None, generation)
        video = await client.download(generation, target, overwrite=overwrite)
    if settings.json_output:
        echo_json({**generation_json(generation), **_downloaded_json(video)})
    else:
        echo_err(f"saved {video.size} bytes to {video.path}  (sha256 {video.sha256[:16]}...)")
    return EXIT_OK


def describe_error(exc: VeoError) -> str:
    """A one-paragraph explanation of an SDK error for the terminal."""
    if isinstance(exc, WaitTimeoutError):
        return (
            f"{exc}\nThe generation may still finish: veo-async download {exc.generation_id} --wait"
        )
    return str(exc)
