"""The cost guard: may one more create be sent? Pure arithmetic on the batch's books.

Two limits: ``max_generations`` (creates, counting those of unknown outcome) and
``credit_budget`` (credits). A cost the server does not give, or gives as NaN, infinite or
negative, is no cost: such a job, and every create of unknown outcome, is charged at
max(estimate, largest sane cost seen) from before its create is sent until the batch ends,
never at zero. With neither an estimate nor a cost seen, one job at a time is in flight.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._models import Generation

__all__ = ["CostGuard", "Verdict", "credit_verdict", "sane_credits"]


class Verdict(enum.Enum):
    """What the guard says of one more create."""

    GO = "go"
    WAIT = "wait"  # jobs in flight may still report a lower cost (or end)
    STOP = "stop"  # never: submission stops


def credit_verdict(
    budget: float,
    spent: float,
    in_flight: int,
    settled_unknown: int,
    estimate: float | None,
    largest: float | None,
) -> Verdict:
    """Whether one more create fits ``budget``.

    ``spent`` is the sum of the sane costs the server reported; ``in_flight`` counts jobs
    created or being created whose cost is not known yet (it may still become known and be
    lower than the estimate, so the guard waits for them); ``settled_unknown`` counts jobs that
    ended, or whose create is of unknown outcome, with no sane cost: they may have been
    charged and will never say what, so they stay charged. Every job of unknown cost is
    charged at the estimate or the largest cost seen, whichever is larger. With neither, one
    job at a time is in flight until a cost is seen, and a job whose cost stays unknown stops
    the guard: it can no longer tell what is left.
    """
    known = [x for x in (estimate, largest) if x is not None]
    per_job = max(known) if known else None
    if per_job is None:
        if in_flight:
            return Verdict.WAIT
        if settled_unknown or spent >= budget:
            return Verdict.STOP
        return Verdict.GO
    committed = spent + (in_flight + settled_unknown) * per_job
    if committed + per_job > budget + 1e-9 * max(1.0, budget):
        return Verdict.WAIT if in_flight else Verdict.STOP
    if spent >= budget:
        return Verdict.STOP
    return Verdict.GO


def sane_credits(generation: Generation) -> float | None:
    """The cost the server reported, or ``None`` when it is missing or nonsense.

    A missing, non-finite (NaN, infinity) or negative figure is not a cost: the credit guard
    then counts the job at its estimate, never at zero.
    """
    try:
        raw = generation.credits_used
    except Exception:  # a figure pydantic kept but that is no number
        return None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


class CostGuard:
    """The books of one batch and the verdict on one more create.

    The job table moves jobs in and out of ``in_flight`` / ``settled_unknown`` as their state
    changes; :meth:`cost_known` moves a job out of ``in_flight`` when the server reports its
    cost.
    """

    __slots__ = (
        "budget",
        "estimate",
        "in_flight",
        "largest",
        "max_generations",
        "settled_unknown",
        "spent",
    )

    def __init__(
        self, max_generations: int | None, budget: float | None, estimate: float | None
    ) -> None:
        self.max_generations = max_generations
        self.budget = budget
        self.estimate = estimate
        self.spent = 0.0
        """The sum of the sane costs the server reported."""
        self.in_flight = 0
        """Jobs created (or being created) whose cost is not known yet."""
        self.settled_unknown = 0
        """Jobs that ended, or whose create is of unknown outcome, with no sane cost."""
        self.largest: float | None = None
        """The largest sane cost seen."""

    def verdict(self, made: int, creating: int) -> tuple[Verdict, str | None]:
        """One more create, with ``made`` generations possibly made (created, being created,
        of unknown outcome) of which ``creating`` are still being created: the verdict and, if
        not GO, the stop reason."""
        limit = self.max_generations
        if limit is not None and made >= limit:
            return (Verdict.WAIT, None) if creating else (Verdict.STOP, "max_generations")
        budget = self.budget
        if budget is not None:
            verdict = credit_verdict(
                budget,
                self.spent,
                self.in_flight,
                self.settled_unknown,
                self.estimate,
                self.largest,
            )
            if verdict is not Verdict.GO:
                return verdict, "credit_budget"
        return Verdict.GO, None

    def cost_known(self, previous: float | None, credits: float, *, counted: bool) -> None:
        """The server reported a sane cost for a job (``previous``: its last one, if any;
        ``counted``: whether the job was in ``in_flight``, i.e. created by this batch)."""
        if previous is None:
            if counted:
                self.in_flight -= 1
            self.spent += credits
        else:
            self.spent += credits - previous
        if self.largest is None or credits > self.largest:
            self.largest = credits
