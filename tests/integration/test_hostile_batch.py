"""Batches against hostile servers over real sockets (``tests/hostile.py``).

A small scripted job server: ``POST`` makes ids (``job-0``, ``job-1``, ... in arrival order),
``GET`` answers statuses (completed with a video at the first poll); each test injects one
misbehaviour for chosen inputs (by prompt). Every case runs on asyncio and trio with the httpx
transport, and on asyncio with the aiohttp transport.

The invariants asserted, whatever the server does:

* **accounted for**: every input read is in exactly one of: a result that settled it (ok or
  failed), ``unsubmitted()``, or ``uncertain()`` (an uncertain input is also yielded, once, as
  a result whose error is ``CreateOutcomeUnknownError``, and only those are);
* **billed at most once**: no prompt reached the server in two creates;
* **bounded time**: every batch ends under ``anyio.fail_after``;
* **no poll failure ends the batch**: ``stop_reason`` stays ``None`` unless a guard stopped it;
* **the credit guard holds**: see ``test_the_credit_guard_holds_when_costs_are_missing_or_nonsense``
  for the exact bound.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from veo_async import (
    AsyncVeoClient,
    Batch,
    BatchResult,
    CreateOutcomeUnknownError,
    PollPolicy,
    RetryConfig,
    VeoError,
)
from veo_async._exceptions import InvalidResponseError

from ..hostile import HostileServer, Recorded, Reply, broken_gzip, deep_json, generation

# On trio, plain httpx (no SDK involved: reproduced with a bare ``httpx.AsyncClient().get``)
# leaves its and httpcore's body generators unfinished when a ``Content-Encoding: gzip`` body
# fails to decode; trio's finalizer then warns. Only those warnings are let through here.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object (AsyncHTTP11Connection"
        r"\._receive_response_body|AsyncResponseStream\.__aiter__|BoundAsyncStream\.__aiter__"
        r"|HTTP11ConnectionByteStream\.__aiter__|PoolByteStream\.__aiter__|Response\.aiter_raw)"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]

SCALE = 0.001
RETRY = RetryConfig(max_attempts=2, initial_backoff=0.001, max_backoff=0.005, max_retry_after=0.01)
LIMIT = 20.0  # seconds: every batch here ends far sooner (about a second at most)

# (anyio backend, transport): the aiohttp transport exists only on asyncio
STACKS = [("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")]


@pytest.fixture(params=STACKS, ids=["-".join(s) for s in STACKS])
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    """One (backend, transport) pair."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(stack: tuple[str, str]) -> str:
    """The event loop of this case (overrides the conftest fixture)."""
    return stack[0]


@pytest.fixture
def transport(stack: tuple[str, str]) -> str:
    """``"httpx"`` or ``"aiohttp"``."""
    return stack[1]


def make_client(server: HostileServer, transport: str) -> AsyncVeoClient:
    """A client with short retries and a compressed clock, on the chosen transport."""
    return AsyncVeoClient(
        "sk-hostile-0123456789",
        base_url=server.url,
        retry=RETRY,
        time_scale=SCALE,
        fast_transport=transport == "aiohttp",
    )


class Jobs:
    """The job server's script: ids in arrival order, done at the first poll.

    ``on_create(n, gid, prompt)`` and ``on_status(gid, prompt, polls)`` may return a hostile
    :class:`Reply` (or ``None`` for the normal one).
    """

    def __init__(
        self,
        on_create: Callable[[int, str, str], Reply | None] | None = None,
        on_status: Callable[[str, str, int], Reply | None] | None = None,
    ) -> None:
        self.on_create = on_create
        self.on_status = on_status
        self.prompts: dict[str, str] = {}
        self.polls: Counter[str] = Counter()
        self._next = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, req: Recorded) -> Reply:
        if req.method == "POST":
            prompt = str(req.json()["prompt"])
            with self._lock:
                n = next(self._next)
                gid = f"job-{n}"
                self.prompts[gid] = prompt
            hostile = self.on_create(n, gid, prompt) if self.on_create else None
            return hostile or Reply.json(generation(gid))
        gid = req.query.get("generation_id", "")
        with self._lock:
            self.polls[gid] += 1
            polls = self.polls[gid]
            known = self.prompts.get(gid)
        if known is None:
            return Reply.json({"message": "Generation not found"}, status=404)
        hostile = self.on_status(gid, known, polls) if self.on_status else None
        return hostile or Reply.json(generation(gid, "completed", f"https://cdn.test/{gid}.mp4"))


async def run(
    client: AsyncVeoClient, prompts: list[str], **options: Any
) -> tuple[dict[int, BatchResult], Batch]:
    """Run a batch to its end within ``LIMIT`` seconds; results by input index (each once)."""
    results: dict[int, BatchResult] = {}
    options.setdefault("poll_policy", PollPolicy(time_scale=SCALE))
    options.setdefault("job_timeout", 10.0)
    with anyio.fail_after(LIMIT):
        async with client.batch(prompts, **options) as batch:
            async for result in batch:
                assert result.index not in results, "an input was reported twice"
                results[result.index] = result
    return results, batch


def check_accounted(results: dict[int, BatchResult], batch: Batch) -> None:
    """Every input read is settled by a result, unsubmitted or uncertain, exactly once."""
    seen = set(range(batch.counts.total_seen))
    unsubmitted = [i for i, _ in batch.unsubmitted()]
    uncertain = [i for i, _ in batch.uncertain()]
    assert len(set(unsubmitted)) == len(unsubmitted)
    assert len(set(uncertain)) == len(uncertain)
    reported_uncertain = {
        i for i, r in results.items() if isinstance(r.error, CreateOutcomeUnknownError)
    }
    assert set(uncertain) == reported_uncertain
    settled = set(results) - reported_uncertain
    assert not settled & set(unsubmitted) and not set(uncertain) & set(unsubmitted)
    assert settled | set(uncertain) | set(unsubmitted) == seen
    assert batch.counts.uncertain == len(uncertain)


def check_billed_once(server: HostileServer, prompts: list[str]) -> Counter[str]:
    """No prompt reached the server in two creates; returns the creates per prompt."""
    sent = Counter(str(r.json()["prompt"]) for r in server.received("POST"))
    assert all(n == 1 for n in sent.values()), sent
    assert set(sent) <= set(prompts)
    return sent


# ---------------------------------------------------------------------------- creates

UNREADABLE_CREATES: dict[str, Callable[[str], Reply]] = {
    "broken-gzip": lambda gid: broken_gzip(generation(gid)),
    "deep-json": lambda gid: deep_json(),
    "html-200": lambda gid: Reply(
        headers=[("Content-Type", "text/html")], body=b"<html>welcome</html>"
    ),
    "short-body": lambda gid: Reply.json(generation(gid), content_length=500),
    "bad-status-line": lambda gid: Reply(raw=b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"),
    "empty-id": lambda gid: Reply.json(generation("")),
    "blank-id": lambda gid: Reply.json(generation("   ")),
    "null-id": lambda gid: Reply.json({"id": None, "status": "queued"}),
    "no-id": lambda gid: Reply.json({"status": "queued"}),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(UNREADABLE_CREATES))
async def test_an_unreadable_create_reply_is_uncertain_and_the_batch_goes_on(
    transport: str, kind: str
) -> None:
    """A create the server took but whose reply cannot be read (or names no usable id) puts
    the input in uncertain(), never unsubmitted(); it is sent once; the rest completes."""
    prompts = [f"{'hostile' if i in (1, 4) else 'fine'} {i}" for i in range(6)]

    def on_create(n: int, gid: str, prompt: str) -> Reply | None:
        return UNREADABLE_CREATES[kind](gid) if prompt.startswith("hostile") else None

    with HostileServer(Jobs(on_create)) as server:
        async with make_client(server, transport) as client:
            results, batch = await run(client, prompts, max_concurrency=3)
        check_billed_once(server, prompts)
        assert server.count("POST") == len(prompts)
    check_accounted(results, batch)
    assert sorted(i for i, _ in batch.uncertain()) == [1, 4]
    assert batch.unsubmitted() == []
    for i in (1, 4):
        assert results[i].generation_id is None and not results[i].ok
    assert all(results[i].ok for i in (0, 2, 3, 5))
    assert batch.stop_reason is None


@pytest.mark.anyio
async def test_the_same_id_for_two_creates_keeps_the_first_and_reports_the_second(
    transport: str,
) -> None:
    """A create answered with an id already given to another input: that input keeps its job;
    this one is uncertain, never reported completed with the other input's video."""
    prompts = [f"clip {i}" for i in range(5)]

    def on_create(n: int, gid: str, prompt: str) -> Reply | None:
        return Reply.json(generation("job-0")) if n in (2, 3) else None

    with HostileServer(Jobs(on_create)) as server:
        async with make_client(server, transport) as client:
            results, batch = await run(client, prompts, max_concurrency=1)
        check_billed_once(server, prompts)
        assert server.count("POST") == 5
    check_accounted(results, batch)
    holders = [r for r in results.values() if r.generation_id == "job-0"]
    assert [r.index for r in holders] == [0] and holders[0].ok
    assert sorted(i for i, _ in batch.uncertain()) == [2, 3]
    for i in (2, 3):
        error = results[i].error
        assert isinstance(error, CreateOutcomeUnknownError)
        assert "'job-0'" in str(error) and "input 0" in str(error)
        assert results[i].generation is None and results[i].generation_id is None
    assert results[1].ok and results[4].ok
    assert batch.stop_reason is None


# ---------------------------------------------------------------------------- polls

MALFORMED_STATUSES: dict[str, Callable[[str], Reply]] = {
    "broken-gzip": lambda gid: broken_gzip(generation(gid, "completed", "https://cdn.test/x")),
    "deep-json": lambda gid: deep_json(),
    "html-200": lambda gid: Reply(headers=[("Content-Type", "text/html")], body=b"<html>"),
    "not-a-generation": lambda gid: Reply.json({"hello": "world"}),
    "short-body": lambda gid: Reply.json(generation(gid, "generating"), content_length=400),
    "bad-status-line": lambda gid: Reply(raw=b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"),
    "another-jobs-id": lambda gid: Reply.json(
        generation("job-0", "completed", "https://cdn.test/job-0.mp4")
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(MALFORMED_STATUSES))
async def test_a_malformed_status_reply_fails_that_job_only(transport: str, kind: str) -> None:
    """A job whose status replies are always malformed is retried, then reported failed with
    the cause; no other job is touched and the batch goes on to the end."""
    prompts = [f"{'hostile' if i == 2 else 'fine'} {i}" for i in range(5)]

    def on_status(gid: str, prompt: str, polls: int) -> Reply | None:
        return MALFORMED_STATUSES[kind](gid) if prompt.startswith("hostile") else None

    jobs = Jobs(on_status=on_status)
    with HostileServer(jobs) as server:
        async with make_client(server, transport) as client:
            results, batch = await run(client, prompts, max_concurrency=1, max_poll_failures=3)
        check_billed_once(server, prompts)
        assert server.count("POST") == 5
    check_accounted(results, batch)
    bad = results[2]
    assert bad.generation_id == "job-2" and not bad.ok
    assert isinstance(bad.error, VeoError)
    assert bad.generation is None  # never someone else's generation (or video)
    # retried like a failed poll: at least once per allowed failure (the client may retry
    # each, and aiohttp itself retries an idempotent GET once on a dropped connection)
    assert 3 <= jobs.polls["job-2"] <= 3 * RETRY.max_attempts * 2
    if kind == "another-jobs-id":
        assert isinstance(bad.error, InvalidResponseError) and "'job-0'" in str(bad.error)
    assert all(results[i].ok for i in (0, 1, 3, 4))
    assert [r.generation_id for r in results.values() if r.ok].count("job-0") == 1
    assert batch.stop_reason is None and batch.uncertain() == [] and batch.unsubmitted() == []
    assert batch.counts.failed == 1 and batch.counts.done == 4


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["deep-json", "another-jobs-id", "broken-gzip"])
async def test_a_malformed_status_reply_once_is_retried_and_the_job_completes(
    transport: str, kind: str
) -> None:
    """One bad status reply is a failed poll, not a failed job: the next poll completes it."""
    prompts = [f"clip {i}" for i in range(4)]

    def on_status(gid: str, prompt: str, polls: int) -> Reply | None:
        if gid == "job-1" and polls == 1:
            return MALFORMED_STATUSES[kind](gid)
        return None

    jobs = Jobs(on_status=on_status)
    with HostileServer(jobs) as server:
        async with make_client(server, transport) as client:
            # one attempt per status request: the engine's own retry is what is tested
            client.retry = RetryConfig(max_attempts=1)
            results, batch = await run(client, prompts, max_concurrency=1)
        check_billed_once(server, prompts)
    check_accounted(results, batch)
    assert all(r.ok for r in results.values()) and len(results) == 4
    assert results[1].generation_id == "job-1" and jobs.polls["job-1"] >= 2
    assert batch.stop_reason is None


# ---------------------------------------------------------------------------- credit guard

# What the server says a job cost: ``meta.usage.credits_used`` (``MISSING``: no meta at all).
MISSING = object()
FIGURES: dict[str, Any] = {
    "missing": MISSING,
    "null": None,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "negative": -5,
    "huge-string": "1e999",
    "not-a-number": "lots",
}


def with_cost(doc: dict[str, Any], figure: Any) -> dict[str, Any]:
    """``doc`` with ``figure`` as its cost."""
    if figure is MISSING:
        return doc
    return {**doc, "meta": {"usage": {"credits_used": figure}}}


@pytest.mark.anyio
@pytest.mark.parametrize("figure", sorted(FIGURES))
@pytest.mark.parametrize("estimate", [1.0, None])
async def test_the_credit_guard_holds_when_costs_are_missing_or_nonsense(
    transport: str, figure: str, estimate: float | None
) -> None:
    """credit_budget=3 over 12 inputs, every reply's cost missing or nonsense.

    The bound asserted, exactly: with ``estimated_credits_per_job=1`` at most
    floor(3 / 1) = 3 creates reach the server, and here exactly 3 do. Why: every job of
    unknown cost is charged at the estimate from before its create is sent until the batch
    ends (a cost that never comes is never taken for zero), and a create is sent only when
    spent + charged + one more estimate fits the budget, asked again once a concurrency slot is
    free; so concurrency adds no overshoot in creates. Without an estimate, one job at a time is
    in flight until a sane cost is seen, and a job whose cost stays unknown stops the guard:
    exactly 1 create.
    """
    cost = FIGURES[figure]

    def on_create(n: int, gid: str, prompt: str) -> Reply | None:
        return Reply.json(with_cost(generation(gid), cost))

    def on_status(gid: str, prompt: str, polls: int) -> Reply | None:
        done = generation(gid, "completed", f"https://cdn.test/{gid}.mp4")
        return Reply.json(with_cost(done, cost))

    prompts = [f"clip {i}" for i in range(12)]
    with HostileServer(Jobs(on_create, on_status)) as server:
        async with make_client(server, transport) as client:
            results, batch = await run(
                client,
                prompts,
                credit_budget=3,
                estimated_credits_per_job=estimate,
                max_concurrency=8,
                max_poll_failures=2,
            )
        check_billed_once(server, prompts)
        creates = server.count("POST")
    check_accounted(results, batch)
    assert creates == (3 if estimate is not None else 1)
    assert batch.stop_reason == "credit_budget"
    assert batch.counts.credits_used == 0  # no figure was taken as a cost


@pytest.mark.anyio
@pytest.mark.parametrize("concurrency", [1, 8])
async def test_unknown_costs_count_as_the_largest_cost_seen(
    transport: str, concurrency: int
) -> None:
    """Estimate 1, budget 10; the first job reports 4 credits, every other one NaN.

    An unknown cost counts as max(estimate, largest seen) = 4. One create at a time: job 0
    (4 known) and job 1 (unknown, so 4) leave 2, less than 4: exactly 2 creates. Eight at a
    time: the creates sent before the first cost came back were admitted at the estimate, so at
    most floor(10 / 1) = 10 creates (the concurrency-bounded overshoot in credits), and at
    least 2.
    """

    def on_create(n: int, gid: str, prompt: str) -> Reply | None:
        return Reply.json(with_cost(generation(gid), 4 if n == 0 else float("nan")))

    def on_status(gid: str, prompt: str, polls: int) -> Reply | None:
        done = generation(gid, "completed", f"https://cdn.test/{gid}.mp4")
        return Reply.json(with_cost(done, 4 if gid == "job-0" else float("nan")))

    prompts = [f"clip {i}" for i in range(12)]
    with HostileServer(Jobs(on_create, on_status)) as server:
        async with make_client(server, transport) as client:
            results, batch = await run(
                client,
                prompts,
                credit_budget=10,
                estimated_credits_per_job=1,
                max_concurrency=concurrency,
            )
        check_billed_once(server, prompts)
        creates = server.count("POST")
    check_accounted(results, batch)
    if concurrency == 1:
        assert creates == 2
    else:
        assert 2 <= creates <= 10
    assert batch.stop_reason == "credit_budget"
    assert batch.counts.credits_used == 4


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http-500", "broken-gzip", "deep-json"])
async def test_creates_of_unknown_outcome_count_against_the_guards(
    transport: str, kind: str
) -> None:
    """A create that may have been billed is charged at the estimate and counts as a
    generation: budget 3 at 1 credit, or max_generations=3, lets exactly 3 creates out."""
    replies: dict[str, Callable[[str], Reply]] = {
        "http-500": lambda gid: Reply.json({"message": "internal"}, status=500),
        "broken-gzip": lambda gid: broken_gzip(generation(gid)),
        "deep-json": lambda gid: deep_json(),
    }

    def on_create(n: int, gid: str, prompt: str) -> Reply | None:
        return replies[kind](gid)

    prompts = [f"clip {i}" for i in range(12)]
    for options, reason in (
        ({"credit_budget": 3, "estimated_credits_per_job": 1}, "credit_budget"),
        ({"max_generations": 3}, "max_generations"),
    ):
        with HostileServer(Jobs(on_create)) as server:
            async with make_client(server, transport) as client:
                results, batch = await run(client, prompts, max_concurrency=4, **options)
            check_billed_once(server, prompts)
            assert server.count("POST") == 3
        check_accounted(results, batch)
        assert len(batch.uncertain()) == 3
        assert batch.stop_reason == reason
