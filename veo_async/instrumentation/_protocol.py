"""The instrumentation seam: what the SDK reports, as a small protocol with a no-op default.

The client and the batch engine call these hooks at the points a user wants to see in their
own tracing and metrics: a batch, each job in it, and each request (create, poll, download).
The default, :data:`NO_INSTRUMENTATION`, does nothing and costs a method call; the
OpenTelemetry implementation lives in :mod:`veo_async.instrumentation.otel` (the ``otel``
extra). A hook never raises into the SDK's control flow: implementations must be total.

Spans are handles, not context managers, because a batch and a job outlive any single
``with`` block of the SDK's code (a batch is entered in ``__aenter__`` and left in
``__aexit__``). :meth:`Instrumentation.use` makes a handle the current parent for the requests
made inside it (contextvars, so it follows anyio's task spawning).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "NO_INSTRUMENTATION",
    "Attribute",
    "Instrumentation",
    "NullInstrumentation",
    "RequestKind",
    "Span",
]

Attribute = str | int | float | bool
"""A span or metric attribute value."""


class RequestKind(str, enum.Enum):
    """What an HTTP request is for."""

    CREATE = "create"
    POLL = "poll"
    DOWNLOAD = "download"

    def __str__(self) -> str:
        return self.value


class Span(Protocol):
    """A unit of work being traced (a batch, a job, or one request)."""

    def set(self, key: str, value: Attribute | None) -> None:
        """Set an attribute; ``None`` is ignored."""

    def fail(self, error: BaseException) -> None:
        """Mark the span failed with ``error`` (its type and message, never the key)."""

    def end(self) -> None:
        """End the span (idempotent)."""


class Instrumentation(Protocol):
    """Hooks the SDK calls; every method must be cheap and must never raise."""

    def start_batch(self) -> Span:
        """A batch starts (``async with client.batch(...)`` entered)."""

    def start_job(
        self, parent: Span | None, index: int, model: str | None, prompt: str | None
    ) -> Span:
        """A job of a batch starts (its create is about to be sent, or an id is tracked).

        ``prompt`` is given so an implementation may record it when its user opted in.
        """

    def start_request(self, kind: RequestKind, attempt: int) -> Span:
        """One HTTP request (one attempt) starts; a child of the current span."""

    def use(self, span: Span | None) -> contextlib.AbstractContextManager[None]:
        """Make ``span`` the parent of the spans started inside the block."""

    def rate_limited(self, kind: RequestKind) -> None:
        """The server answered 429."""

    def retried(self, kind: RequestKind) -> None:
        """A request is about to be sent again."""

    def detected(self, delay_seconds: float) -> None:
        """A finished job was noticed ``delay_seconds`` at most after it finished."""

    def credits_spent(self, credits: float, model: str | None) -> None:
        """The server reported a job's cost."""


class _NullSpan:
    __slots__ = ()

    def set(self, key: str, value: Attribute | None) -> None:
        return None

    def fail(self, error: BaseException) -> None:
        return None

    def end(self) -> None:
        return None


_NULL_SPAN = _NullSpan()


class NullInstrumentation:
    """Reports nothing (the default)."""

    __slots__ = ()

    def start_batch(self) -> Span:
        """No span."""
        return _NULL_SPAN

    def start_job(
        self, parent: Span | None, index: int, model: str | None, prompt: str | None
    ) -> Span:
        """No span."""
        return _NULL_SPAN

    def start_request(self, kind: RequestKind, attempt: int) -> Span:
        """No span."""
        return _NULL_SPAN

    @contextlib.contextmanager
    def use(self, span: Span | None) -> Iterator[None]:
        """Nothing to make current."""
        yield

    def rate_limited(self, kind: RequestKind) -> None:
        """Nothing to count."""

    def retried(self, kind: RequestKind) -> None:
        """Nothing to count."""

    def detected(self, delay_seconds: float) -> None:
        """Nothing to record."""

    def credits_spent(self, credits: float, model: str | None) -> None:
        """Nothing to record."""


NO_INSTRUMENTATION: Instrumentation = NullInstrumentation()
"""The default: no spans, no metrics."""
