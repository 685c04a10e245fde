"""The queue model: FIFO model of the server's per-key concurrency limit. Pure."""

from __future__ import annotations

__all__ = ["QueueModel"]


class QueueModel:
    """FIFO model of the server's per-key concurrency limit.

    The server runs only so many generations per key at once; the rest stay ``queued``, so
    time from submission is not time from start. When a poll sees a job still ``queued`` well
    after submission (``grace``), the model marks the server *saturated* and estimates its
    concurrency ``C`` from the jobs seen started (FIFO: the highest started submission rank
    minus the jobs finished). A queued job of rank ``s`` then starts when the job of rank
    ``s - C`` finishes.

    Ranks are submission order within one batch (0, 1, 2, ...). The caller reports what polls
    show (:meth:`saw_started`, :meth:`saw_queued`) and finished jobs (:meth:`finished`), and
    asks :meth:`predecessor` which job must finish before a given one can start.

    The estimate takes the upper bound while the two bounds differ, which suits polling (an
    early look is corrected by what it sees). Paying ahead asks :meth:`paying_bound` instead:
    a create sent on an overestimate is paid and cannot be taken back.
    """

    __slots__ = (
        "_floor",
        "_max_started",
        "_upper",
        "concurrency",
        "done",
        "grace",
        "saturated",
    )

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self.saturated = False
        #: Estimated number of generations the server runs at once for this key (``None``
        #: until saturation was seen).
        self.concurrency: int | None = None
        self.done = 0
        self._max_started = -1
        self._floor = 0  # most seen running at once: max of rank + 1 - done when seen started
        self._upper: int | None = None

    def finished(self) -> None:
        """A job of this batch reached a final state (the server freed its slot)."""
        self.done += 1

    def saw_started(self, rank: int) -> None:
        """A poll showed the job of ``rank`` generating (or finished)."""
        self._max_started = max(self._max_started, rank)
        self._floor = max(self._floor, rank + 1 - self.done)
        if self.saturated:
            self._update(rank)

    def saw_queued(self, rank: int, waited: float) -> None:
        """A poll showed the job of ``rank`` still queued ``waited`` seconds after submission.

        It waits because the jobs ahead of it that have not finished (about ``rank - done``)
        fill the server's slots: the concurrency is at most that.
        """
        if waited < self.grace:
            return
        bound = rank - self.done
        if bound >= 1 and (self._upper is None or bound < self._upper):
            self._upper = bound
        self.saturated = True
        self._update(self._max_started)

    def _update(self, rank: int) -> None:
        """Estimate the concurrency from both bounds.

        The highest rank seen started gives a lower bound, a job seen queued an upper one.
        When the upper bound is at least the lower one it is used: polls are then early
        rather than late (a late poll is never corrected, an early one sees ``queued``). A
        lower bound alone, taken when few jobs had been polled yet, makes every later wave
        wait for a predecessor that has long finished.
        """
        lower = rank + 1 - self.done
        upper = self._upper
        if lower < 1 and upper is None:
            return  # nothing seen started (another client may hold every slot)
        lower = max(1, lower)
        estimate = upper if upper is not None and upper >= lower else lower
        if self.concurrency is None or estimate > self.concurrency or upper == estimate:
            self.concurrency = estimate

    def lower_bound(self) -> int:
        """The fewest generations the server was seen running at once for this batch (the
        highest rank seen started, plus one, minus the jobs finished; 0: none seen)."""
        return max(0, self._max_started + 1 - self.done)

    def proven(self) -> int:
        """The most generations the server was seen running at once for this batch: over
        every sighting of a started job, the highest of its rank, plus one, minus the jobs
        finished at that time (0: none seen). Unlike :meth:`lower_bound` it never falls as
        jobs finish."""
        return self._floor

    def paying_bound(self) -> int | None:
        """The concurrency to count when paying ahead while the server is saturated and the
        concurrency is known only between two bounds (the upper one above :meth:`proven`):
        :meth:`proven`, at least 1. ``None`` when settled (count :attr:`concurrency`) or not
        saturated.

        Not :attr:`concurrency`, which is then the upper bound: the first job seen queued
        past the grace can be far down the queue (rank 97 of a 50-slot server, seen late
        under a rate limit), and creates paid up to twice that wait for slots that do not
        exist. Not :meth:`lower_bound` either: it falls as jobs finish, and creates held on
        it would let the server's slots run dry.
        """
        upper = self._upper
        if not self.saturated or upper is None or upper <= self._floor:
            return None
        return max(1, self._floor)

    def unsettled(self) -> tuple[int, int] | None:
        """While saturated with the concurrency known only between two bounds: ``(lower,
        upper)`` (a job of rank ``done + (lower + upper) // 2`` seen past the grace would
        halve the gap); ``None`` when settled or not saturated."""
        upper = self._upper
        if not self.saturated or upper is None:
            return None
        lower = max(1, self.lower_bound())
        return (lower, upper) if upper > lower else None

    def predecessor(self, rank: int) -> int | None:
        """The rank whose completion frees the slot for ``rank``; ``None`` if not limited."""
        if not self.saturated or self.concurrency is None:
            return None
        before = rank - self.concurrency
        return before if before >= 0 else None
