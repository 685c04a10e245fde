"""Every batch option in one frozen, typed object, validated once."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..polling import PollPolicy
    from ._results import BatchObserver

__all__ = ["BatchOptions", "resolve_options"]


def check_credits(name: str, value: object) -> float | None:
    """A credit figure given by the user: a finite number >= 0, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of credits or None, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(
            f"{name} must be a finite number of credits >= 0 (None for no "
            f"{'budget' if name == 'credit_budget' else 'estimate'}), got {value!r}"
        )
    return number


@dataclass(frozen=True, eq=False)
class BatchOptions:
    """How a batch runs. Pass one to ``client.batch(inputs, options=...)`` /
    ``client.as_completed(ids, options=...)``, or the same names as keyword arguments.

    Invalid values raise ``ValueError`` / ``TypeError`` when the options are made, before
    anything is sent.
    """

    max_concurrency: int = 32
    """HTTP requests in flight for this batch (creates and polls alike)."""
    requests_per_second: float | None = None
    """A client-side rate shared by this batch's creates and polls (``None``: none)."""
    poll_policy: PollPolicy | None = None
    """When to poll (default: the client's ``poll_policy``)."""
    job_timeout: float | None = 1000.0
    """Seconds from submission after which a job is reported as a timeout (with its id)."""
    batch_timeout: float | None = None
    """Seconds for the whole batch."""
    max_generations: int | None = None
    """Stop submitting after this many creates (creates of unknown outcome count)."""
    credit_budget: float | None = None
    """Stop submitting before the credits spent could exceed this (see the cost guard)."""
    observer: BatchObserver | None = None
    """Hooks called before and after each create, per result, per event."""
    buffer: int = 64
    """Finished, unconsumed results held before submission pauses (polling goes on)."""
    estimated_credits_per_job: float | None = None
    """The cost guard's charge for a job whose cost is not known yet."""
    create_grace: float = 10.0
    """Seconds a create already sent may run on after cancellation, so its id is recorded."""
    max_poll_failures: int = 5
    """Failed status requests in a row (each already retried) before a job is reported failed."""
    progress: bool = False
    """Show a progress line on stderr while the batch runs (rewritten in place in a terminal
    or a Jupyter notebook; throttled whole lines in a log)."""
    queue_ahead: float | None = 1.0
    """How many paid-but-not-started jobs may wait on the server, in *waves* of its learned
    concurrency beyond what it runs (``1.0``: about one wave; ``None``: no cap, every input
    is created as fast as slots allow).

    Every create is paid when it is sent, but a server that runs ``C`` generations per key
    at once only starts the rest as slots come free. Creates beyond ``(1 + queue_ahead) x C``
    jobs not yet finished are held back, so Ctrl-C, the credit guard or a run of failed jobs
    can still save them; one wave queued keeps every slot busy, so the batch takes no
    longer. Until the server is seen saturated ``C`` counts as at least 32 (and as many as
    were seen running at once: the newest job is polled 2 s after its create to find out)."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.buffer < 1:
            raise ValueError("buffer must be at least 1")
        for name in ("job_timeout", "batch_timeout"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("credit_budget", "estimated_credits_per_job"):
            object.__setattr__(self, name, check_credits(name, getattr(self, name)))
        if self.max_generations is not None and self.max_generations < 0:
            raise ValueError("max_generations must not be negative")
        ahead: object = self.queue_ahead
        if ahead is not None:
            if isinstance(ahead, bool) or not isinstance(ahead, numbers.Real):
                raise TypeError(f"queue_ahead must be a number of waves or None, got {ahead!r}")
            if not (math.isfinite(float(ahead)) and float(ahead) >= 0):
                raise ValueError(
                    f"queue_ahead must be a finite number of waves >= 0, got {ahead!r}"
                )
        if self.create_grace < 0 or self.max_poll_failures < 1:
            raise ValueError("create_grace must be >= 0 and max_poll_failures >= 1")


def resolve_options(options: BatchOptions | None, **keywords: Any) -> BatchOptions:
    """The options of a batch entry point: ``options`` or the keywords, not both.

    ``keywords`` are the entry point's explicit keyword parameters (every field of
    :class:`BatchOptions`); with ``options`` given they must all be at their defaults.
    """
    if options is None:
        return BatchOptions(**keywords)
    if not isinstance(options, BatchOptions):
        raise TypeError(f"options must be a BatchOptions, got {type(options).__name__}")
    changed = [f.name for f in fields(BatchOptions) if keywords.get(f.name, f.default) != f.default]
    if changed:
        raise TypeError(
            f"pass either options= or keyword options, not both (got options= and {changed})"
        )
    return options
