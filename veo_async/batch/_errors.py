"""What a failure means for one input: the errors a batch gives back, built in one place."""

from __future__ import annotations

import sys

import anyio

from .._exceptions import (
    APIConnectionError,
    CreateOutcomeUnknownError,
    GenerationFailedError,
    InvalidResponseError,
    VeoError,
    WaitTimeoutError,
)
from .._models import Generation, VideoRequest

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "create_error",
    "generation_failed",
    "other_leaves",
    "timed_out",
    "unreadable_status",
    "wrong_id",
    "wrong_reply",
]


def other_leaves(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    """Whether ``group`` holds anything but ``exc`` and cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in group.exceptions:
        if isinstance(leaf, BaseExceptionGroup):
            if other_leaves(leaf, exc):
                return True
        elif leaf is not exc and not isinstance(leaf, cancelled):
            return True
    return False


def create_error(index: int, request: VideoRequest, exc: Exception) -> VeoError:
    """What a failed create means for its input; anything not proven harmless is uncertain.

    The client already reports a create that may have reached the server as
    :class:`CreateOutcomeUnknownError`. This is the engine's own line of defence: an exception
    that is no :class:`VeoError` (a ``RecursionError`` from a deeply nested reply, a raw
    transport or decoding error) or an error saying the request was sent or answered with an
    unreadable success is of unknown outcome too, never "not submitted". Only refusals (4xx,
    429, a create-safe 5xx), a connection never made and local validation keep their type.
    """
    if isinstance(exc, CreateOutcomeUnknownError):
        return exc
    if isinstance(exc, VeoError) and not (
        isinstance(exc, InvalidResponseError)
        or (isinstance(exc, APIConnectionError) and exc.request_sent)
    ):
        return exc
    detail = str(exc)[:200] or type(exc).__name__
    error = CreateOutcomeUnknownError(
        f"the create for input {index} may or may not have started a billed generation: it "
        f"failed after the request may have reached the server ({type(exc).__name__}: "
        f"{detail}). Resubmit only if a possible duplicate is acceptable",
        request=request,
        request_id=exc.request_id if isinstance(exc, VeoError) else None,
    )
    error.__cause__ = exc
    return error


def unreadable_status(gid: str, exc: Exception) -> VeoError:
    """A status request that failed with something other than a :class:`VeoError`."""
    if isinstance(exc, VeoError):
        return exc
    detail = str(exc)[:200] or type(exc).__name__
    error = InvalidResponseError(
        f"GET status of generation {gid}: the reply could not be read ({type(exc).__name__}: "
        f"{detail})",
        method="GET",
    )
    error.__cause__ = exc
    return error


def wrong_id(index: int, request: VideoRequest | None, gid: str, other: int | None) -> VeoError:
    """A create answered with an id that cannot be this input's job: blank, or the id of
    input ``other``. The server may have started (and billed) a job for this input that
    cannot be tracked: the input is uncertain, and the job that owns the id goes on."""
    if other is None:
        why = f"a blank generation id ({gid!r})"
    else:
        why = (
            f"generation id {gid!r}, which the server had already given input {other}; "
            f"input {other} keeps that generation, and this input is not reported with its "
            "video"
        )
    return CreateOutcomeUnknownError(
        f"the create for input {index} was answered with {why}. A generation may have "
        "been started (and billed) for this input that cannot be tracked; resubmit only if "
        "a possible duplicate is acceptable",
        request=request,
    )


def wrong_reply(gid: str, index: int, generation: Generation) -> VeoError:
    """A status request answered about another job's id."""
    return InvalidResponseError(
        f"GET status of generation {gid} (input {index}) was answered "
        f"with generation {generation.id!r}: a reply about another job is not "
        "taken for this one",
        method="GET",
    )


def timed_out(gid: str, index: int, why: str, last: Generation | None) -> WaitTimeoutError:
    """Tracking of a job ended by a timeout; the generation may still complete."""
    return WaitTimeoutError(
        f"generation {gid} (input {index}) {why}; it may still complete: resume it "
        f"with client.as_completed([{gid!r}]) or client.wait({gid!r})",
        generation_id=gid,
        last=last,
    )


def generation_failed(index: int, generation: Generation) -> GenerationFailedError:
    """A generation that ended in ``error`` or completed without a video."""
    reason = generation.error_message or "completed without a video URL"
    return GenerationFailedError(
        f"generation {generation.id} (input {index}) failed: {reason}",
        generation=generation,
    )
