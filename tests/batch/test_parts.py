"""The batch package's parts on their own: job table, cost guard, options, typed entry points."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from veo_async import AsyncVeoClient, BatchOptions, Veo2TextToVideo, VeoClient
from veo_async.batch import JobState
from veo_async.batch._guard import CostGuard, Verdict
from veo_async.batch._jobs import Job, JobTable
from veo_async.batch._options import resolve_options
from veo_async.batch._results import BatchCounts

ENTRY_POINTS = [
    AsyncVeoClient.batch,
    AsyncVeoClient.as_completed,
    VeoClient.batch,
    VeoClient.as_completed,
]

ROOT = Path(__file__).resolve().parents[2]


def _table() -> tuple[JobTable, BatchCounts, CostGuard]:
    counts = BatchCounts()
    guard = CostGuard(None, 100.0, 10.0)
    return JobTable(counts, guard), counts, guard


def _job(index: int = 0) -> Job:
    return Job(index, Veo2TextToVideo(prompt="a fox"), None)


def test_a_created_job_moves_every_counter_through_its_life() -> None:
    """NEW -> SUBMITTING -> TRACKING -> FINISHED keeps live, creating, created, the counts and
    the guard's books in step, and a job that ended with no cost stays charged."""
    table, counts, guard = _table()
    job = _job()
    table.transition(job, JobState.SUBMITTING)
    assert (table.active, table.creating, counts.submitting, guard.in_flight) == (1, 1, 1, 1)
    assert table.made == 1
    job.gid = "g1"
    table.transition(job, JobState.TRACKING)
    assert (table.creating, table.created, counts.submitting, counts.running) == (0, 1, 0, 1)
    assert counts.submitted == 1 and table.jobs == {0: job} and table.gids == {"g1": 0}
    table.transition(job, JobState.FINISHED)
    assert (table.active, counts.running, guard.in_flight, guard.settled_unknown) == (0, 0, 0, 1)
    table.consumed(0)
    assert table.jobs == {}


def test_a_job_whose_cost_is_known_is_not_charged_at_the_estimate() -> None:
    """A reported cost moves the job out of the in-flight books; finishing then settles nothing."""
    table, _, guard = _table()
    job = _job()
    table.transition(job, JobState.SUBMITTING)
    job.gid = "g1"
    table.transition(job, JobState.TRACKING)
    guard.cost_known(None, 7.0, counted=True)
    job.credits = 7.0
    table.transition(job, JobState.FINISHED)
    assert (guard.spent, guard.in_flight, guard.settled_unknown, guard.largest) == (7.0, 0, 0, 7.0)


@pytest.mark.parametrize(
    ("to", "in_flight", "settled", "uncertain"),
    [
        (JobState.REFUSED, 0, 0, 0),
        (JobState.UNSENT, 0, 0, 0),
        (JobState.UNCERTAIN, 0, 1, 1),
    ],
)
def test_a_create_that_fails_settles_the_books_by_what_it_may_have_started(
    to: JobState, in_flight: int, settled: int, uncertain: int
) -> None:
    """A refusal or a create never sent releases its charge; an uncertain one keeps it."""
    table, counts, guard = _table()
    job = _job()
    table.transition(job, JobState.SUBMITTING)
    table.transition(job, to)
    assert (table.active, table.creating, counts.submitting) == (0, 0, 0)
    assert (guard.in_flight, guard.settled_unknown, counts.uncertain) == (
        in_flight,
        settled,
        uncertain,
    )
    assert table.made == uncertain


def test_a_resumed_job_is_tracked_and_never_charged() -> None:
    """An id given to track goes NEW -> TRACKING, counted running, outside the credit books."""
    table, counts, guard = _table()
    job = _job()
    job.gid, job.resumed = "g9", True
    table.transition(job, JobState.TRACKING)
    assert (table.active, counts.running, table.created, guard.in_flight) == (1, 1, 0, 0)
    table.transition(job, JobState.FINISHED)
    assert (table.active, guard.settled_unknown) == (0, 0)


@pytest.mark.parametrize(
    ("was", "to"),
    [
        (JobState.NEW, JobState.FINISHED),
        (JobState.FINISHED, JobState.TRACKING),
        (JobState.UNCERTAIN, JobState.TRACKING),
    ],
)
def test_an_impossible_transition_is_refused(was: JobState, to: JobState) -> None:
    """A transition the state diagram does not have raises instead of corrupting counters."""
    table, counts, _ = _table()
    job = _job()
    job.state = was
    with pytest.raises(RuntimeError, match=f"{was.name} -> {to.name}"):
        table.transition(job, to)
    assert job.state is was and counts == BatchCounts()


def test_the_cost_guard_counts_max_generations_with_creates_under_way() -> None:
    """At the limit the guard waits while creates are under way, then stops."""
    guard = CostGuard(3, None, None)
    assert guard.verdict(2, 0) == (Verdict.GO, None)
    assert guard.verdict(3, 1) == (Verdict.WAIT, None)
    assert guard.verdict(3, 0) == (Verdict.STOP, "max_generations")


def test_the_cost_guard_charges_unknown_costs_at_the_larger_of_estimate_and_largest() -> None:
    """With 100 credits, estimate 10 and a 30-credit job seen, two unknown jobs (60) plus one
    more (30) fit once, and a fourth waits for the jobs in flight."""
    guard = CostGuard(None, 100.0, 10.0)
    guard.cost_known(None, 30.0, counted=False)
    guard.in_flight = 1
    assert guard.verdict(2, 1)[0] is Verdict.GO  # 30 + 30 + 30 <= 100
    guard.in_flight = 2
    assert guard.verdict(3, 2) == (Verdict.WAIT, "credit_budget")  # 30 + 60 + 30 > 100
    guard.in_flight, guard.settled_unknown = 0, 2
    assert guard.verdict(3, 0) == (Verdict.STOP, "credit_budget")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"buffer": 0}, "buffer"),
        ({"job_timeout": -1}, "job_timeout"),
        ({"batch_timeout": float("nan")}, "batch_timeout"),
        ({"max_generations": -1}, "max_generations"),
        ({"create_grace": -1}, "create_grace"),
        ({"max_poll_failures": 0}, "max_poll_failures"),
        ({"credit_budget": float("inf")}, "credit_budget"),
        ({"estimated_credits_per_job": "3"}, "estimated_credits_per_job"),
    ],
)
def test_options_are_validated_once_with_clear_errors(kw: dict[str, Any], message: str) -> None:
    """Each invalid option fails when the options are made, naming the option."""
    with pytest.raises((ValueError, TypeError), match=message):
        BatchOptions(**kw)


def test_options_are_frozen_and_credits_normalised() -> None:
    """Options cannot change after validation; credit figures become floats."""
    options = BatchOptions(credit_budget=5, estimated_credits_per_job=1)
    assert options.credit_budget == 5.0 and isinstance(options.credit_budget, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_concurrency = 3  # type: ignore[misc]


def test_options_object_or_keywords_but_not_both() -> None:
    """``options=`` is taken as it is; keywords beside it are refused, naming them."""
    options = BatchOptions(max_concurrency=3)
    assert resolve_options(options) is options
    assert resolve_options(None, max_concurrency=4).max_concurrency == 4
    with pytest.raises(TypeError, match="max_concurrency"):
        resolve_options(options, max_concurrency=4)
    client = AsyncVeoClient("key", base_url="http://127.0.0.1")
    assert client.batch(["a"], options=options).options is options
    with pytest.raises(TypeError, match="buffer"):
        client.as_completed(["g1"], options=options, buffer=2)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__qualname__)
def test_batch_entry_points_have_typed_keyword_options(entry: Any) -> None:
    """No ``**options``: every BatchOptions field is an explicit keyword-only parameter with
    the same default, plus ``options=``."""
    params = inspect.signature(entry).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values())
    keywords = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    expected = {f.name: f.default for f in dataclasses.fields(BatchOptions)}
    durable = {"store": None, "store_options": None} if "store" in keywords else {}
    assert keywords == {"options": None, **expected, **durable}


def test_mypy_sees_the_batch_options(tmp_path: Path) -> None:
    """A type checker rejects a misspelt or mistyped batch option at every entry point."""
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "use_batch.py"
    source.write_text(
        textwrap.dedent(
            """
            from veo_async import AsyncVeoClient, BatchOptions, VeoClient

            def use(a: AsyncVeoClient, s: VeoClient) -> None:
                a.batch(["x"], max_concurency=3)
                a.as_completed(["g"], job_timeout="soon")
                s.batch(["x"], buffer=None)
                s.as_completed(["g"], options=3)
                a.batch(["x"], options=BatchOptions(max_concurrency=2), buffer=4)
            """
        )
    )
    # Start from a copy of the project's own mypy cache when there is one (scripts/check.sh
    # runs mypy, same pyproject options, before pytest): veo_async, httpx, pydantic and anyio
    # are then read from it instead of re-checked (about 1 s of CPU instead of 13 s). mypy
    # re-checks whatever the cache has stale; without a cache this is the cold run it was.
    cache = tmp_path / "cache"
    try:
        shutil.copytree(ROOT / ".mypy_cache", cache)
    except (OSError, shutil.Error):  # none yet, or mypy rewriting it right now
        shutil.rmtree(cache, ignore_errors=True)
    out, _, status = api.run([str(source), "--cache-dir", str(cache)])
    assert status == 1
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert sorted({int(line.split(":")[1]) for line in errors}) == [5, 6, 7, 8], out
