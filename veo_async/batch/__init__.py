"""The batch engine: submit many requests / track many ids, yield results as they finish.

Why an async context manager around the iterator: the engine runs a task group (the input
feeder, the poll dispatcher and one short task per HTTP request in flight). An async generator
cannot safely own a task group across ``yield`` (anyio's rule: a cancellation or an exception
raised in a child could be delivered to whatever code the consumer runs between two
``yield``), and a consumer that breaks out of ``async for`` must still get every background task
cancelled and every connection released before control returns. The ``async with`` block is
that owner: leaving it (normally, by ``break``, by an exception or by cancellation of the
surrounding scope) stops submitting and polling, waits for the tasks, and only then returns::

    async with client.batch(prompts, max_concurrency=32) as batch:
        async for result in batch:          # completion order; result.index says which input
            ...
    batch.pending()      # submitted-but-unfinished jobs, to resume with client.as_completed()
    batch.unsubmitted()  # inputs read but never submitted

``client.as_completed(ids)`` is the same engine fed with ids only, so it yields the same
:class:`BatchResult` (failures typed the same way: timeout, failed generation, unknown id).

The parts (one file each):

* ``_options.py``: :class:`BatchOptions`, every option, typed and validated once.
* ``_results.py``: what comes back (:class:`BatchResult`, :class:`PendingJob`,
  :class:`BatchCounts`) and the observer hooks (:class:`BatchObserver`).
* ``_jobs.py``: the job table; a job's state (:class:`JobState`) changes only through
  ``JobTable.transition``, which keeps the counters.
* ``_scheduler.py``: the heap of planned polls and the dispatcher's wake-ups.
* ``_guard.py``: the cost guard (credit budget, ``max_generations``), pure arithmetic.
* ``_errors.py``: what a failure means for one input.
* ``_api.py``: :class:`JobsAPI`, what the engine needs of a client (no import cycle).
* ``_outbox.py``: the result stream, result counters, observer notifications, job spans.
* ``_runner.py``: the task group: feeder, creates, dispatcher, polls.
* ``_batch.py``: :class:`Batch`, the public handle (context manager, iterator, state).

When to poll is decided outside, by :class:`~veo_async.polling.BatchPlanner` (pure).

How it works (the shape of aiometer's bounded runner, plus a scheduler):

* **Scheduler, not a task per job.** Every tracked job is a small slotted record in a heap
  keyed by its next poll time; one dispatcher task pops due jobs. 100,000 tracked jobs cost a
  few hundred bytes each and no task.
* **Limiter.** ``max_concurrency`` bounds HTTP requests in flight (creates and polls alike):
  the feeder and the dispatcher acquire a semaphore slot *before* spawning the request task,
  which releases it when the response is in. An optional ``requests_per_second`` token bucket
  is shared by creates and polls of this batch; the client's :class:`~veo_async.ratelimit.
  RateGovernor` additionally pauses and paces everything after a 429.
* **Planner.** When to poll is decided by the pure :class:`~veo_async.polling.BatchPlanner`:
  the :class:`~veo_async.PollPolicy` (learned schedule) and the
  :class:`~veo_async.polling.QueueModel` (jobs queued behind the server's concurrency limit
  are not polled before they can have started).
* **Results** go through one anyio memory object stream. ``buffer`` bounds how many finished,
  unconsumed results may wait: beyond it the feeder stops reading inputs and submitting (polling
  goes on, so detection times stay honest).
* **Failures are results.** A job's failure never ends the batch: 400, a failed generation, a
  timeout, an unknown id (404), a create of unknown outcome all come back as a
  :class:`BatchResult` with a typed ``error``. Errors that make every further request pointless
  end it, raised out of ``async for`` / ``async with``: 401 (:class:`~veo_async.
  AuthenticationError`), a 404 on *create* (wrong ``base_url``/endpoint), and programming
  errors (including exceptions raised by observer hooks). A 403 on create (e.g. out of
  credits) stops submitting; what was submitted is still polled to the end.
* **Cancellation never loses an id.** A create already sent when the batch is cancelled runs
  on in a shielded scope for at most ``create_grace`` seconds so its id can be recorded (and
  ``after_submit`` called); if the grace runs out, the input is listed by :meth:`Batch.
  uncertain`. Ids that were recorded but whose result was not consumed are in
  :meth:`Batch.pending`.

``stop_reason`` values: ``"max_generations"``, ``"credit_budget"``, ``"permission_denied"``
(403 on create), ``"batch_timeout"``, ``"cancelled"`` (left early or cancelled),
``"authentication"`` (401), ``"not_found"`` (404 on create), ``"error"`` (a programming error).

Guarantees against a server that misbehaves (each enforced where the reply enters the engine):

* **Every input is accounted for once.** An input read is settled by one result (ok or
  failed), or listed by :meth:`Batch.unsubmitted` (provably never sent: not reached, refused
  with 403, cancelled before its create), or by :meth:`Batch.uncertain` (its create may have
  started a billed generation). An uncertain input is also yielded once, as a result whose
  error is :class:`~veo_async.CreateOutcomeUnknownError`; no other result is uncertain.
* **A create is sent at most once, and anything but a proven refusal is uncertain.** Once the
  request may have reached the server, any failure before a usable id (a reply that does not
  decode or parse, ``RecursionError``, any exception that is no ``VeoError``, a reply naming a
  blank id) makes the input uncertain, never unsubmitted. A create answered with an id the
  server already gave another input of the batch is uncertain too (with an error naming the
  id): the input that had the id keeps its job, and the second is never reported completed
  with the first one's video.
* **No status reply ends the batch.** A failed, unreadable or malformed status reply (any
  ``Exception`` from a poll, or a reply about another job's id) is one failed poll of that job:
  retried with back-off, and after ``max_poll_failures`` in a row the job is a failed result
  carrying the last error. Only a 401, a 404 on a create and a programming error (an
  observer hook raising) end a batch.
* **The credit guard never stops guarding.** ``credit_budget`` and ``estimated_credits_per_job``
  must be finite and >= 0. A cost the server does not give, or gives as NaN, infinite or
  negative, is no cost: such a job, and every create of unknown outcome, is charged at
  max(estimate, largest sane cost seen), from before its create is sent until the batch ends,
  never at zero. A create is sent only when what is spent, plus what is so charged, plus one
  more such charge fits the budget, checked again once a concurrency slot is free. So with an
  estimate and costs never known, at most ``floor(budget / estimate)`` creates are sent;
  credits can exceed the budget only by what the jobs in flight cost beyond the per-job charge
  they were admitted at. Without an estimate, one job at a time is in flight until a sane cost
  is seen, and a job whose cost stays unknown stops submission (``"credit_budget"``): nothing
  tells what the budget has left. ``max_generations`` counts creates of unknown outcome too.
"""

from ._api import JobsAPI
from ._batch import Batch
from ._durable import DurableBatch, StoreOptions
from ._jobs import JobState
from ._options import BatchOptions
from ._results import (
    BatchCounts,
    BatchInput,
    BatchItem,
    BatchObserver,
    BatchResult,
    InputTaken,
    JobEvent,
    NullObserver,
    PendingJob,
)

__all__ = [
    "Batch",
    "BatchCounts",
    "BatchInput",
    "BatchItem",
    "BatchObserver",
    "BatchOptions",
    "BatchResult",
    "DurableBatch",
    "InputTaken",
    "JobEvent",
    "JobState",
    "JobsAPI",
    "NullObserver",
    "PendingJob",
    "StoreOptions",
]
