"""Compatibility: the batch engine now lives in :mod:`veo_async.batch`.

This module re-exports its public names (and the cost guard's ``credit_verdict`` under its
old name) so code that imports them from here keeps working.
"""

from __future__ import annotations

from .batch import (
    Batch,
    BatchCounts,
    BatchInput,
    BatchItem,
    BatchObserver,
    BatchOptions,
    BatchResult,
    JobEvent,
    NullObserver,
    PendingJob,
)
from .batch._guard import credit_verdict as _credit_verdict

__all__ = [
    "Batch",
    "BatchCounts",
    "BatchInput",
    "BatchItem",
    "BatchObserver",
    "BatchOptions",
    "BatchResult",
    "JobEvent",
    "NullObserver",
    "PendingJob",
    "_credit_verdict",
]
