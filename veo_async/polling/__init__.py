"""When to look at a generation next. Pure decisions: no clock, no network.

A generation takes a fairly predictable time (about 42 to 49 s for a 5 s Veo2 clip), so polling
at a fixed interval wastes requests early and adds delay late. The parts:

:class:`PollPlanner` (``_protocol.py``)
    The seam: four decisions (first poll, next poll after a reply, next poll after a failed
    status request, what a finished job teaches). A new policy is a class of about 30 lines
    implementing them; :class:`JobTiming` is what it knows about a job.

:class:`PollPolicy` (``_adaptive.py``; per client or per batch; learns across jobs)
    Times are measured from the job's *start anchor*: when it was submitted, or, when the
    server had it ``queued`` behind its concurrency limit, when it is estimated to have started.

    1. Before it knows anything, the first poll is at ``first_poll_fraction`` of the expected
       duration (``request.expected_seconds()``), then every ``interval`` seconds.
    2. From completions observed in this run (``observe``) it fits a *schedule*
       (``_schedule.py``): the first poll at some quantile of the observed durations, then a
       fixed step. The fit minimises ``requests per job + delay_weight * mean detection delay
       (s)`` over the observed durations (a small grid search over at most ``window``
       samples, redone as samples accumulate), so a tight distribution gets a late first poll
       and short steps, a wide one longer steps (never longer than ``tail_gap``: a fit over a
       few samples could pick a long step that happens to land on them).
    3. Past the bulk of the observed durations (``tail_quantile``) the step grows
       geometrically (``backoff``), but only up to ``tail_gap`` for ``tail_window`` times the
       expected duration (a job whose start was mispredicted is still plausibly about to
       finish: it is found late by at most about ``tail_gap``); only then up to
       ``max_interval``: a real straggler costs few requests.

:class:`QueueModel` (``_queue.py``; per batch)
    The server runs only so many generations per key at once; the rest stay ``queued``, so
    time from submission is not time from start. When a poll sees a job still ``queued``
    well after submission (``queued_grace``), the model marks the server *saturated* and
    estimates its concurrency ``C``. A queued job of rank ``s`` then starts when the job of
    rank ``s - C`` finishes, so its anchor is that job's (observed or predicted) completion:
    no request is spent on jobs that cannot have started.

:class:`BatchPlanner` corrections within a wave (issue 16)
    * Completion order: on a FIFO server the ``k``-th slot to come free starts the job of rank
      ``k + C``. Once that slot is seen freed, it *is* the job's start, earlier or later than
      predicted, and also for a job already seen generating whose start was unknown (seen
      before the server was known to be saturated, it was anchored at its submission).
    * ``queued`` then ``generating``: the start lies between the two looks; the predicted
      start is kept when it lies in between, else the nearer look (not the midpoint).
    * Predictions err early: a predicted start uses the shortest plausible duration (10th
      percentile) of the job ahead, and a job found done without being seen running frees
      its slot early. An early look sees ``queued``/``generating`` and is corrected; a late
      one is never corrected.
    * Learning the concurrency: while the batch's creates are held back by
      ``BatchOptions.queue_ahead``, the newest job is probed 2 s after its create (and past
      the queue grace); once saturated, at most 8 polls bisect ``C`` between its bounds.

:class:`BatchPlanner` (``_batch.py``; per batch)
    The policy, the queue model and the batch's slot history together: the planner a batch
    uses (canary polls, start estimates, re-planning the job that takes a freed slot).

:class:`FixedIntervalPlanner` (``_fixed.py``)
    Every ``interval`` seconds, nothing learned: the naive baseline.
    (:class:`FixedIntervalPolicy` is the same baseline for places that take a ``PollPolicy``.)
"""

from ._adaptive import PollPolicy
from ._batch import BatchPlanner
from ._fixed import FixedIntervalPlanner, FixedIntervalPolicy
from ._protocol import JobTiming, PollJob, PollPlanner
from ._queue import QueueModel
from ._schedule import Schedule, schedule_cost

__all__ = [
    "BatchPlanner",
    "FixedIntervalPlanner",
    "FixedIntervalPolicy",
    "JobTiming",
    "PollJob",
    "PollPlanner",
    "PollPolicy",
    "QueueModel",
    "Schedule",
    "schedule_cost",
]
