"""A virtual-time simulation of the batch planner against a FIFO server (no clock, no network).

    python -m benchmarks.plan_sim --n 100,200,1000 --seeds 5

It drives :class:`~veo_async.polling.BatchPlanner` exactly as the batch runner does (first poll
on registration, ``recheck`` when a poll falls due, ``seen``/``plan`` after a reply,
``finished`` then ``successor`` after a final one) against a server like the emulator's: a
per-key FIFO queue of ``slots`` generating at once, each job ready ``queue_delay`` s after its
create and taking ``45 s x exp(0.075 z)`` (Veo2, 5 s clips). Replies are instant and requests
unlimited, so it measures the *schedule* only: status requests per job, detection delay (mean
and p99), and how far the last detection lies past the last completion. ``creates_per_s``
spreads the creates as a client that sends them through its concurrency slots would.

``queue_ahead`` (optional) holds creates back as the engine's ``BatchOptions.queue_ahead``
does.
The figures it prints are a design aid, not a benchmark: ``benchmarks/vs_script.py`` measures
the real thing. The unit tests (``tests/test_poll_schedule.py``) use :func:`simulate` with
fixed seeds and assert the schedule's properties, never a timing.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field

from veo_async import Generation, PollPolicy
from veo_async.polling import BatchPlanner, JobTiming

__all__ = ["SimResult", "simulate", "veo2_durations"]


def veo2_durations(n: int, seed: int) -> list[float]:
    """Generation times like the emulator's for Veo2 5 s clips (z clipped to +-3)."""
    rng = random.Random(seed)
    return [45.0 * math.exp(0.075 * max(-3.0, min(3.0, rng.gauss(0.0, 1.0)))) for _ in range(n)]


@dataclass
class SimResult:
    """What one simulated run measured (service seconds)."""

    polls: list[int]
    delays: list[float]
    completed: list[float]
    noticed: list[float]
    created: list[float]
    started: list[float]
    max_paid_not_started: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def polls_per_job(self) -> float:
        """Status requests per job."""
        return sum(self.polls) / len(self.polls)

    @property
    def mean_delay(self) -> float:
        """Mean detection delay."""
        return statistics.fmean(self.delays)

    @property
    def p99_delay(self) -> float:
        """99th percentile of the detection delay (nearest rank)."""
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def max_delay(self) -> float:
        """The largest detection delay."""
        return max(self.delays)

    @property
    def makespan(self) -> float:
        """First create to the last job noticed."""
        return max(self.noticed) - min(self.created)

    @property
    def server_makespan(self) -> float:
        """First create to the last completion (what no client can beat)."""
        return max(self.completed) - min(self.created)


class _Server:
    """The emulator's per-key FIFO: ``slots`` generating at once, ready after a delay."""

    def __init__(self, slots: int, durations: list[float], queue_delay: float) -> None:
        self.slots = slots
        self.durations = durations
        self.queue_delay = queue_delay
        self.created: dict[int, float] = {}
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self._queue: deque[int] = deque()
        self._running: list[tuple[float, int]] = []

    def create(self, i: int, now: float) -> None:
        self.advance(now)
        self.created[i] = now
        if not self._queue and len(self._running) < self.slots:
            self._start(i, now)
        else:
            self._queue.append(i)

    def _start(self, i: int, at: float) -> None:
        started = max(at, self.created[i] + self.queue_delay)
        self.started[i] = started
        self.finished[i] = started + self.durations[i]
        heapq.heappush(self._running, (self.finished[i], i))

    def advance(self, now: float) -> None:
        while self._running and self._running[0][0] <= now:
            freed, _ = heapq.heappop(self._running)
            while self._queue and len(self._running) < self.slots:
                self._start(self._queue.popleft(), freed)

    def status(self, i: int, now: float) -> str:
        self.advance(now)
        started = self.started.get(i)
        if started is None or now < started:
            return "queued"
        return "completed" if now >= self.finished[i] else "generating"


def _reply(status: str) -> Generation:
    body: dict[str, object] = {"id": "g", "status": status}
    if status == "completed":
        body["video"] = {"url": "https://cdn.example/v.mp4"}
    return Generation.model_validate(body)


_REPLIES = {s: _reply(s) for s in ("queued", "generating", "completed")}


def simulate(
    n: int,
    *,
    seed: int = 0,
    slots: int = 50,
    queue_delay: float = 1.0,
    creates_per_s: float = 200.0,
    policy: PollPolicy | None = None,
    queue_ahead: float | None = None,
    durations: list[float] | None = None,
    trace: dict[int, list[tuple[float, str, float]]] | None = None,
) -> SimResult:
    """Run ``n`` jobs through a fresh :class:`BatchPlanner`; see the module docstring.

    ``queue_ahead``: the engine's ``BatchOptions.queue_ahead`` (``None``: no cap): the next
    create goes only while :meth:`BatchPlanner.room_ahead` allows, as the engine's feeder
    holds them, and the newest job is probed as the feeder does.
    """
    durs = durations if durations is not None else veo2_durations(n, seed)
    server = _Server(slots, durs, queue_delay)
    planner = BatchPlanner[JobTiming](policy or PollPolicy())
    jobs: list[JobTiming | None] = [None] * n
    heap: list[tuple[float, int, int]] = []  # (due, push order, index)
    pushes = 0
    noticed: list[float] = [math.nan] * n
    statuses: dict[str, int] = {}
    gap = 1.0 / creates_per_s
    next_create = 0
    now = 0.0

    def push(i: int, due: float) -> None:
        nonlocal pushes
        job = jobs[i]
        assert job is not None
        job.planned = due
        pushes += 1
        heapq.heappush(heap, (due, pushes, i))

    while True:
        # creates: one every ``gap`` seconds while the cap allows
        create_at = now if next_create < n else math.inf
        if next_create < n and queue_ahead is not None and not planner.room_ahead(0, queue_ahead):
            create_at = math.inf  # held: wait for a poll to change what is known
            probe = planner.probe(now)
            if probe is not None:
                push(probe[0].rank, probe[1])
        due_at = heap[0][0] if heap else math.inf
        if create_at == math.inf and due_at == math.inf:
            break
        if create_at <= due_at:
            now = max(now, create_at)
            i = next_create
            next_create += 1
            server.create(i, now)
            new = JobTiming(now, 45.0)
            jobs[i] = new
            planner.add(new)
            push(i, planner.first_poll(new, now))
            now += gap
            continue
        due, _, i = heapq.heappop(heap)
        job = jobs[i]
        assert job is not None
        if due != job.planned or job.planned == math.inf:
            continue
        now = max(now, due)
        later = planner.recheck(job, now)
        if later is not None and later > due + 1e-6 and later > now:
            push(i, later)
            continue
        job.due = due
        status = server.status(i, now)
        if trace is not None:
            trace.setdefault(i, []).append((round(now, 2), status[0], round(job.anchor, 2)))
        statuses[status] = statuses.get(status, 0) + 1
        job.polls += 1
        job.failures = 0
        if status == "completed":
            noticed[i] = now
            job.planned = math.inf
            planner.finished(job, _REPLIES[status], now)
            nxt = planner.successor(now)
            if nxt is not None:
                k = nxt[0].rank
                push(k, nxt[1])
            continue
        planner.seen(job, _REPLIES[status], now)
        push(i, planner.plan(job, now))
        settle = planner.settle(now)  # as the runner does after every reply
        if settle is not None:
            push(settle[0].rank, settle[1])

    polls = [j.polls for j in jobs if j is not None]
    done = [server.finished[i] for i in range(n)]
    delays = [noticed[i] - done[i] for i in range(n)]
    events = sorted(
        [(server.created[i], 1) for i in range(n)] + [(server.started[i], -1) for i in range(n)],
        key=lambda e: (e[0], e[1]),
    )
    peak = level = 0
    for _, step in events:  # at equal times, starts first
        level += step
        peak = max(peak, level)
    return SimResult(
        polls=polls,
        delays=delays,
        completed=done,
        noticed=noticed,
        created=[server.created[i] for i in range(n)],
        started=[server.started[i] for i in range(n)],
        max_paid_not_started=peak,
        statuses=statuses,
    )


def main(argv: list[str] | None = None) -> int:
    """Print the schedule's figures for a few sizes and seeds."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_sim", description=__doc__)
    parser.add_argument("--n", default="100,200,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ahead", type=float, default=None, help="queue_ahead (default: none)")
    args = parser.parse_args(argv)
    print("N      polls/job  mean   p99    max    tail   paid-ahead")
    for n in [int(x) for x in args.n.split(",")]:
        for seed in range(args.seeds):
            r = simulate(n, seed=seed, queue_ahead=args.ahead)
            tail = r.makespan - r.server_makespan
            print(
                f"{n:<6} {r.polls_per_job:9.2f} {r.mean_delay:6.2f} {r.p99_delay:6.2f} "
                f"{r.max_delay:6.2f} {tail:6.2f} {r.max_paid_not_started:6d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
