"""Durable job stores: where a batch's jobs live so that crashes and many workers lose nothing.

- :class:`JobStore`: the protocol (inputs keyed by request hash, the one-winner intent step,
  submitted ids, outcomes, downloads, and work leases that a live worker takes over from a
  dead one).
- :class:`SQLiteStore`: embedded, one file, WAL, survives SIGKILL.
- :class:`RedisStore`: many processes on many machines (Streams, hashes, Lua); asyncio only.
- :class:`SharedBudget`: one request budget (a Redis reservation schedule) and one learned pace for
  every process on an API key; asyncio only.
- :func:`open_store`: ``sqlite:///path`` or ``redis://host:port/db``.

The Redis classes need the ``redis`` extra: ``pip install 'veo-async[redis]'``.
"""

from ._base import (
    TRANSITIONS,
    Event,
    JobState,
    JobStore,
    StoredJob,
    StoreError,
    StoreUnavailableError,
    Transition,
    WorkItem,
    batch_fingerprint,
    input_key,
    input_keys,
)
from ._budget import SharedBudget, budget_name
from ._open import open_store
from ._redis import RedisStore
from ._sqlite import SQLiteStore

__all__ = [
    "TRANSITIONS",
    "Event",
    "JobState",
    "JobStore",
    "RedisStore",
    "SQLiteStore",
    "SharedBudget",
    "StoreError",
    "StoreUnavailableError",
    "StoredJob",
    "Transition",
    "WorkItem",
    "batch_fingerprint",
    "budget_name",
    "input_key",
    "input_keys",
    "open_store",
]
