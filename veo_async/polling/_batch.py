"""The batch planner: "when to poll" for every job of one batch, with the server's queue.

It composes the adaptive :class:`PollPolicy` (learned schedule), the :class:`QueueModel`
(jobs queued behind the server's concurrency limit) and the batch's slot history (when each
slot came free). Pure: every time comes from the caller; the only outside input is
``holding`` (whether a rate limiter is holding requests back), a callable given at
construction.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .._models import GenerationStatus
from ._adaptive import PollPolicy, failure_backoff
from ._protocol import PollJob
from ._queue import QueueModel

if TYPE_CHECKING:
    from .._models import Generation

__all__ = ["BatchPlanner"]

J = TypeVar("J", bound=PollJob)

CANARY_EVERY = 16
"""One job in this many gets an early "canary" poll until the server is seen saturated."""
CANARY_GRACE_FACTOR = 1.5
"""The canary poll comes this many queue graces after submission."""
MIN_THROUGHPUT_SAMPLES = 8
"""Finishes needed before the batch's throughput bounds a predicted start."""
INITIAL_AHEAD = 32
"""Before anything is known of the server's concurrency, the paid-ahead cap counts it as this."""
PROBE_DELAY = 2.0
"""Service seconds after its create that the newest job is polled while the paid-ahead cap
holds creates back and the server's concurrency is unknown (generating: it runs more)."""
MAX_BISECT = 8
"""Polls at most spent per batch on settling the concurrency between its bounds."""
_RUNNING = frozenset({GenerationStatus.GENERATING})
"""Statuses that prove a job has a server slot. Only the documented ``generating``: ``active``
and ``waiting`` (seen in the provider's own example loop) say "not final" and nothing more; an
``active`` job taken as started moved the concurrency's lower bound to its rank, and the
paid-ahead cap with it (issue 16: 144 jobs paid and waiting, against a cap of about 50)."""


def _never() -> bool:
    return False


class BatchPlanner(Generic[J]):
    """Plans the polls of one batch (a :class:`PollPlanner`, plus the finer steps the engine
    needs between them). ``J`` is the caller's job record (any :class:`PollJob`).

    ``holding``: whether a rate limiter is holding requests back (then the batch is
    *rate-bound* unless the server has a deep queue of its jobs). ``failure_time_scale``: the
    scale of the back-off after failed polls (default: the policy's ``time_scale``).
    """

    def __init__(
        self,
        policy: PollPolicy,
        *,
        holding: Callable[[], bool] = _never,
        failure_time_scale: float | None = None,
    ) -> None:
        self.policy = policy
        self.queue: QueueModel | None = (
            QueueModel(policy.queued_grace * policy.time_scale) if policy.queue_aware else None
        )
        self.created = 0
        """Jobs submitted by this batch (not resumed ones)."""
        self._holding = holding
        self._failure_scale = (
            policy.time_scale if failure_time_scale is None else failure_time_scale
        )
        self._ranks: list[J | float] = []  # by rank: the job, or when its slot came free
        self._finish_times: deque[float] = deque(maxlen=256)
        self._freed: list[float] = []  # every freed slot's time, sorted
        self._probed = -1  # the rank last polled early to learn the concurrency
        self._probed_again = -1  # the rank polled again past the queue grace
        self._bisected: set[int] = set()  # ranks polled to settle the concurrency

    # ------------------------------------------------------------------ batch state

    def add(self, job: J) -> None:
        """A job starts being tracked: give it its submission rank (when queue-aware)."""
        if not job.resumed:
            self.created += 1
        if self.queue is not None:
            job.rank = len(self._ranks)
            self._ranks.append(job)

    @property
    def deep_queue(self) -> bool:
        """Whether the server is saturated with at least two waves of this batch's jobs
        (then a create only joins the queue: due polls may go first)."""
        queue = self.queue
        if queue is None or not queue.saturated or queue.concurrency is None:
            return False
        return self.created - queue.done >= 2 * queue.concurrency

    def concurrency_guess(self) -> int:
        """The server's concurrency for this batch as far as known: the learned one once the
        server was seen saturated, else at least :data:`INITIAL_AHEAD` or as many as were seen
        running at once."""
        queue = self.queue
        if queue is None:
            return INITIAL_AHEAD
        if queue.saturated and queue.concurrency is not None:
            return queue.concurrency
        return max(INITIAL_AHEAD, queue.lower_bound())

    def room_ahead(self, creating: int, waves: float) -> bool:
        """Whether one more create keeps the paid-but-not-started jobs within ``waves`` times
        the server's concurrency beyond what it runs.

        The jobs created (or being created, ``creating``) and not finished are at most
        ``(1 + waves) x`` the concurrency: on a FIFO server the rest of them wait, paid, for a
        slot, and a wave of them is enough to fill every slot that comes free before the next
        create could (a create takes a second; a wave, a generation's time). The concurrency
        is counted as :meth:`paying_concurrency` does. Not queue-aware: always room.
        """
        queue = self.queue
        if queue is None:
            return True
        outstanding = self.created + creating - queue.done
        return outstanding < self.paying_concurrency() * (1.0 + waves)

    def paying_concurrency(self) -> int:
        """The server's concurrency as the paid-ahead cap counts it: :meth:`concurrency_guess`,
        except while the server is saturated and its concurrency is known only between two
        bounds. The guess is then the upper bound, which is right for polling (an early look
        is corrected) and wrong for paying (a create is not taken back): the most jobs seen
        running at once counts instead (:meth:`QueueModel.paying_bound`), until the bounds
        meet (issue 16: a rank 97 seen queued on a 50-slot server let ~42 more creates
        through, paid, before a few looks settled the concurrency at 50)."""
        queue = self.queue
        if queue is not None:
            bound = queue.paying_bound()
            if bound is not None:
                return bound
        return self.concurrency_guess()

    def probe(self, now: float) -> tuple[J, float] | None:
        """While creates are held back by the paid-ahead cap and the server was not seen
        saturated: poll the newest job :data:`PROBE_DELAY` after its create, and if it was
        still queued, again past the queue grace. Seen generating, the server runs at least
        that many (the cap grows); seen queued past the grace, it is saturated (the cap is
        learned). ``None``: nothing to probe."""
        queue = self.queue
        if queue is None or not self._ranks:
            return None
        if queue.saturated:
            return self.settle(now)
        rank = len(self._ranks) - 1
        job = self._ranks[rank]
        if isinstance(job, float) or job.started or job.resumed:
            return None
        if rank > self._probed:
            self._probed = rank
            due = max(now, job.submitted + PROBE_DELAY * self.policy.time_scale)
        elif rank == self._probed and job.polls == 1 and not job.queued_seen:
            # it was still queued at the first probe (maybe the normal short queue): look
            # again once past the queue grace, where queued means the server is saturated
            self._probed_again = rank
            due = max(now, job.submitted + CANARY_GRACE_FACTOR * queue.grace)
        else:
            return None
        return (job, due) if due < job.planned - 1e-6 else None

    def settle(self, now: float) -> tuple[J, float] | None:
        """Saturated, with the concurrency between two bounds: the job halfway between them,
        to be looked at once it is past the queue grace (queued: fewer slots; generating:
        more), and when; ``None``: nothing to look at. A few polls early in the batch make
        every later predicted start right (at most :data:`MAX_BISECT` per batch)."""
        queue = self.queue
        if queue is None:
            return None
        bounds = queue.unsettled()
        if bounds is None or len(self._bisected) >= MAX_BISECT:
            return None
        lower, upper = bounds
        rank = queue.done + (lower + upper) // 2
        if not 0 <= rank < len(self._ranks) or rank in self._bisected:
            return None
        job = self._ranks[rank]
        if isinstance(job, float) or job.started or job.resumed or job.queued_seen:
            return None
        self._bisected.add(rank)
        due = max(now, job.submitted + CANARY_GRACE_FACTOR * queue.grace)
        return (job, due) if due < job.planned - 1e-6 else None

    def rate_bound(self) -> bool:
        """Whether requests are scarce: a rate limit decides when they go, and a create held
        back would cost makespan. Not while the server has a deep queue of this batch's jobs:
        a create then only joins the queue, so polls need not be saved."""
        return self._holding() and not self.deep_queue

    def throughput(self) -> float:
        """Jobs finished per second over the recent finishes (0 when unknown)."""
        times = self._finish_times
        if len(times) < MIN_THROUGHPUT_SAMPLES:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    # ------------------------------------------------------------------ PollPlanner

    def first_poll(self, job: J, now: float) -> float:
        """The first poll: planned from the start anchor; a resumed job at once."""
        if job.resumed:
            return now
        due = self.plan(job, now)
        queue = self.queue
        if queue is not None and not queue.saturated and job.rank % CANARY_EVERY == 0:
            # A canary: a server that queues jobs behind its concurrency limit is noticed
            # while it happens (a first poll near the expected duration finds a queued job
            # already generating, and its duration would be learned from its submission).
            due = min(due, now + CANARY_GRACE_FACTOR * queue.grace)
        return due

    def next_poll(self, job: J, reply: Generation, now: float) -> float:
        """:meth:`seen`, then :meth:`plan`."""
        self.seen(job, reply, now)
        return self.plan(job, now)

    def after_failure(self, job: J, now: float) -> float:
        """Back off ``2 ** failures`` service seconds (at most 60)."""
        return now + failure_backoff(job.failures, self._failure_scale)

    def finished(self, job: J, reply: Generation | None, now: float) -> None:
        """Learn from a job completed by a poll; free its slot in the queue model.

        Then ask :meth:`successor` which queued job to plan again.
        """
        if reply is not None and reply.is_terminal and job.polls > 0:
            if reply.status is GenerationStatus.COMPLETED and not job.resumed:
                self._learn(job, now)
            if self.queue is not None:
                self.queue.saw_started(job.rank)
        self._free_slot(job, now)

    # ------------------------------------------------------------------ finer steps

    def seen(self, job: J, reply: Generation, now: float) -> None:
        """Record what a poll at ``now`` showed of a job that is not final."""
        status = reply.status
        queue = self.queue
        if status is GenerationStatus.QUEUED:
            if queue is not None:
                waited = now - job.submitted
                queue.saw_queued(job.rank, waited)
                if waited >= queue.grace or job.resumed:
                    job.queued_seen = True
                    job.started = False
                    job.anchor = max(job.anchor, now)
        elif status in _RUNNING and not job.started:
            if job.queued_seen or job.anchor > now:
                # It started between the last look (still queued) and now. The predicted start
                # (the slot its predecessor frees) is the estimate when it lies in between;
                # else the bound nearest to it. (The midpoint of a long gap between two looks
                # is no estimate at all: it put starts tens of seconds late.)
                job.anchor = min(now, max(job.last_poll, job.anchor))
            job.started = True
            if queue is not None:
                queue.saw_started(job.rank)
        job.last_poll = now
        job.running_seen = status in _RUNNING

    def plan(self, job: J, now: float) -> float:
        """The next poll time of ``job``; a queued job no earlier than it can have started."""
        policy = self.policy
        queue = self.queue
        if queue is None:
            return now + policy.next_delay(now - job.anchor, job.prior, job.polls)
        if job.started:
            self._reanchor(job)
            return now + policy.next_delay(now - job.anchor, job.prior, job.polls)
        before = queue.predecessor(job.rank)
        if before is not None and before < len(self._freed):
            # The slot it waits for is known to have come free: that is its start, earlier
            # or later than predicted (never before it was last seen queued).
            floor = job.last_poll if job.queued_seen else job.submitted
            job.anchor = max(floor, self._freed[before])
        elif before is not None:
            freed = self._slot_freed(before)
            if freed > job.anchor:
                # Never later than when every job ahead of it will have finished at the
                # throughput seen so far (guards against an underestimated concurrency, a
                # non-FIFO server or slots taken by someone else).
                rate = self.throughput()
                if rate > 0:
                    ahead = max(1, job.rank - queue.done)
                    freed = min(freed, max(now, job.anchor) + ahead / rate)
                job.anchor = max(job.anchor, freed)
        return max(now, job.anchor + policy.first_delay(job.prior, rate_bound=self.rate_bound()))

    def recheck(self, job: J, now: float) -> float | None:
        """A due job not seen started: when it should be polled now (``None``: not queue-aware
        or already started, poll as planned)."""
        if self.queue is None or job.started:
            return None
        queue = self.queue
        if (
            (job.rank == self._probed and job.polls == 0)
            or (job.rank == self._probed_again and job.polls == 1)
            or (job.rank in self._bisected and not job.queued_seen)
            or (job.polls == 0 and job.rank % CANARY_EVERY == 0 and not queue.saturated)
        ):
            return None  # a probe or a canary: poll it now
        return self.plan(job, now)

    def successor(self, now: float) -> tuple[J, float] | None:
        """After a slot came free: the queued job that takes it and its new, earlier due time.

        Its first poll was planned from a predicted start (a chain of expected durations);
        now the start is known. A job already seen generating is included: if it was anchored
        before the server was known to be saturated, the freed slot is its real start.
        """
        queue = self.queue
        if queue is None or queue.concurrency is None or not queue.saturated:
            return None
        rank = len(self._freed) - 1 + queue.concurrency
        if not 0 <= rank < len(self._ranks):
            return None
        job = self._ranks[rank]
        if isinstance(job, float) or job.resumed:
            return None
        due = self.plan(job, now)
        return (job, due) if due < job.planned - 1e-6 else None

    # ------------------------------------------------------------------ internals

    def _learn(self, job: J, now: float) -> None:
        """Learn the duration of a job completed by this poll.

        A late poll (a busy event loop, a rate limit) must not teach the policy that jobs are
        slow, or the first poll would drift later and later: the planned time of the poll is
        the upper end.
        """
        policy = self.policy
        if not policy.learn:
            return
        anchor = self.start_estimate(job)
        if anchor is None:
            return
        upper = min(now, job.due)
        if job.running_seen:
            # the previous poll saw it generating: it finished in between
            lower = max(job.last_poll, anchor)
            policy.observe(0.5 * (lower + upper) - anchor, job.prior)
        else:
            # found done with no sighting of it running: an upper bound only (before
            # anything is learned below it: half a step before)
            step = policy.step(job.prior)
            guess = 0.5 * (max(upper - step, anchor) + upper) - anchor
            policy.observe_at_most(upper - anchor, job.prior, fallback_seconds=guess)

    def _reanchor(self, job: J) -> None:
        """A job seen generating, never seen queued: once the slot it waited for is known to
        have come free, that is its start (completion order on a FIFO server: the ``k``-th
        slot freed starts the job of rank ``k + concurrency``).

        It was anchored at its submission (or a predicted start) when it was seen generating;
        if that was before the server was known to be saturated, the anchor can be tens of
        seconds early and every later look would be planned as for a straggler.
        """
        if job.queued_seen or job.resumed or job.rank < 0:
            return
        start = self.start_estimate(job)
        if start is not None and job.anchor < start <= job.last_poll:
            job.anchor = start

    def start_estimate(self, job: J) -> float | None:
        """When ``job`` started on the server, for learning its duration; ``None``: unknown.

        A job never seen ``queued`` is anchored at its submission. That is right on a server
        with free slots, but once the server is known to be saturated, a job that had a
        predecessor in the FIFO queue started no earlier than that predecessor finished
        (learning from the submission time would teach the policy that jobs take twice as
        long, and each wave of a long queue would be detected later than the one before).
        """
        queue = self.queue
        if queue is None or job.queued_seen or not queue.saturated:
            return job.anchor
        before = queue.predecessor(job.rank)
        if before is None:
            return job.anchor
        if before >= len(self._freed):
            return None  # fewer slots have come free than it needed: a non-FIFO server
        return max(job.anchor, self._freed[before])

    def _slot_freed(self, before: int) -> float:
        """When the slot that the job ``before + concurrency`` waits for comes free.

        On a FIFO server that job starts at the ``before``-th slot freed (counting in time
        order, whichever job it was), so a completion seen is used as it is; only when fewer
        have been seen is the job of rank ``before`` predicted.
        """
        freed = self._freed
        if before < len(freed):
            return freed[before]
        slot = self._ranks[before]
        if isinstance(slot, float):
            return slot
        # Predicted from a chain of predictions: early rather than late (the shortest
        # plausible duration), since an early first poll is corrected and a late one is not.
        return slot.anchor + self.policy.shortest(slot.prior)

    def _free_slot(self, job: J, now: float) -> None:
        """When the server freed the job's slot: after the previous poll and by this one;
        within that, where its expected duration puts it (the time of this poll would make
        every wave of a long queue inherit the detection delay of the wave before it)."""
        if self.queue is None or job.rank < 0:
            return
        policy = self.policy
        if job.running_seen:
            expected = job.anchor + policy.expected(job.prior)
        else:
            # found done with no sighting of it running: its start may have been predicted
            # late, so the slot is taken to have come free early (early polls of the job that
            # takes it are corrected by what they see; late ones never are)
            expected = job.anchor + policy.shortest(job.prior)
        freed = min(now, max(job.last_poll, expected))
        self.queue.finished()
        self._ranks[job.rank] = freed
        self._finish_times.append(freed)
        bisect.insort(self._freed, freed)  # nearly in order: cheap
