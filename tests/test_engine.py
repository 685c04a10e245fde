"""The batch engine against a scripted in-memory API (``httpx.MockTransport``), no real sleeping.

Prompts script the fake API: ``"p:N"`` completes after N polls, ``"bad"`` is rejected (400),
``"auth"`` gets 401, ``"deny"`` 403, ``"boom"`` a 500 on create (outcome unknown), ``"fail"``
ends in ``error``, ``"nourl"`` completes without a video, ``"gone"`` polls 404, ``"stuck"`` never
finishes. A few tests use the in-process emulator (``httpx.ASGITransport``) at a tiny time scale.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncGenerator, Iterator
from typing import Any, cast

import anyio
import httpx
import pytest

from veo_async import (
    AsyncVeoClient,
    AuthenticationError,
    BadRequestError,
    Batch,
    BatchItem,
    BatchResult,
    CreateOutcomeUnknownError,
    Generation,
    GenerationFailedError,
    JobEvent,
    NotFoundError,
    NullObserver,
    PermissionDeniedError,
    PollPolicy,
    RequestValidationError,
    RetryConfig,
    VeoError,
    VideoRequest,
    WaitTimeoutError,
    _timing,
)

BASE = "http://127.0.0.1"


class FakeAPI:
    """A scripted API: jobs keyed by prompt codes, with a log of what happened."""

    def __init__(self, *, deny_after: int | None = None, credits: float = 100.0) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []
        self.creates = 0
        self.polls = 0
        self.deny_after = deny_after
        self.credits = credits
        self.gate: anyio.Event | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return self.create(json.loads(request.content))
        return self.poll(request.url.params["generation_id"])

    def create(self, body: dict[str, Any]) -> httpx.Response:
        prompt = str(body["prompt"])
        self.log.append(("create", prompt))
        if prompt.startswith("auth"):
            return httpx.Response(401, json={"message": "Invalid API key"})
        if prompt.startswith("bad"):
            return httpx.Response(400, json={"message": "Body validation error"})
        if prompt.startswith("boom"):
            return httpx.Response(500, json={"message": "internal"})
        if prompt.startswith("deny") or (
            self.deny_after is not None and self.creates >= self.deny_after
        ):
            return httpx.Response(403, json={"message": "out of credits"})
        self.creates += 1
        gid = f"g{self.creates}"
        polls = int(prompt.split(":")[1]) if prompt.startswith("p:") else 1
        self.jobs[gid] = {"prompt": prompt, "left": polls}
        return httpx.Response(200, json={"id": gid, "status": "queued"})

    def poll(self, gid: str) -> httpx.Response:
        self.polls += 1
        job = self.jobs.get(gid)
        if job is None or job["prompt"].startswith("gone"):
            return httpx.Response(404, json={"message": "Generation not found"})
        job["left"] -= 1
        prompt = job["prompt"]
        if prompt.startswith("stuck") or job["left"] > 0:
            return httpx.Response(200, json={"id": gid, "status": "generating"})
        self.log.append(("done", gid))
        meta = {"usage": {"credits_used": self.credits}}
        if prompt.startswith("fail"):
            doc = {"id": gid, "status": "error", "error": {"name": "E", "message": "no"}}
            return httpx.Response(200, json={**doc, "meta": meta})
        video = None if prompt.startswith("nourl") else {"url": f"https://cdn.test/{gid}.mp4"}
        return httpx.Response(
            200, json={"id": gid, "status": "completed", "video": video, "meta": meta}
        )


@pytest.fixture(autouse=True)
def no_waiting() -> Iterator[None]:
    """Remove all SDK waiting (backoff, poll intervals) for these tests."""
    previous = _timing.set_no_waiting(True)
    yield
    _timing.set_no_waiting(previous)


@pytest.fixture
def api() -> FakeAPI:
    """A fresh scripted API."""
    return FakeAPI()


def make_client(handler: Any) -> AsyncVeoClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return AsyncVeoClient("key", base_url=BASE, http_client=http, retry=RetryConfig(max_attempts=2))


async def drain(batch: Batch) -> None:
    async with batch:
        async for _ in batch:
            pass


async def collect(client: AsyncVeoClient, inputs: Any, **options: Any) -> list[BatchResult]:
    async with client.batch(inputs, **options) as batch:
        return [r async for r in batch]


@pytest.mark.anyio
async def test_results_come_in_completion_order_with_their_inputs(api: FakeAPI) -> None:
    """Results come in the order the server finished them, and each names its input."""
    prompts = ["p:9", "p:1", "p:5", "p:2", "p:1", "p:7"]
    async with make_client(api) as client:
        results = await collect(client, prompts, max_concurrency=2)
    assert [r.generation_id for r in results] == [gid for kind, gid in api.log if kind == "done"]
    for r in results:
        assert r.ok
        assert r.request is not None and r.request.prompt == prompts[r.index]
        assert r.generation_id is not None and r.polls >= 1
        assert r.submitted_at is not None and r.finished_at is not None


@pytest.mark.anyio
async def test_each_failure_kind_is_a_typed_result_and_the_batch_goes_on(api: FakeAPI) -> None:
    """400, failed/no-url generations, 404 polls, invalid inputs, unknown outcomes are results."""
    inputs: list[Any] = [
        "bad",
        "fail",
        "nourl",
        "gone",
        {"prompt": "x", "duration": 99},
        "boom",
        "p:1",
    ]
    async with make_client(api) as client, client.batch(inputs) as batch:
        results = {r.index: r async for r in batch}
    assert sorted(results) == list(range(7))
    assert isinstance(results[0].error, BadRequestError)
    assert isinstance(results[1].error, GenerationFailedError)
    assert isinstance(results[2].error, GenerationFailedError)
    assert isinstance(results[3].error, NotFoundError)
    assert results[3].generation_id is not None
    assert isinstance(results[4].error, RequestValidationError)
    assert isinstance(results[5].error, CreateOutcomeUnknownError)
    assert results[6].ok
    assert [i for i, _ in batch.uncertain()] == [5]
    assert batch.counts.done == 1 and batch.counts.failed == 6
    assert batch.stop_reason is None and batch.pending() == []


@pytest.mark.anyio
async def test_401_ends_the_batch_with_the_authentication_error() -> None:
    """A 401 is raised out of the batch (not turned into a result) and stops everything."""
    api = FakeAPI()
    inputs = ["p:50"] * 5 + ["auth"] + ["p:1"] * 50
    async with make_client(api) as client:
        batch = client.batch(inputs, max_concurrency=2)
        with pytest.raises(AuthenticationError):
            await drain(batch)
    assert batch.stop_reason == "authentication"
    assert api.creates < 50
    assert {p.generation_id for p in batch.pending()} == set(api.jobs) - {
        gid for kind, gid in api.log if kind == "done"
    }


@pytest.mark.anyio
async def test_403_stops_submitting_but_polls_what_exists() -> None:
    """After a 403 no create is sent; submitted jobs still finish; refused inputs are listed."""
    api = FakeAPI(deny_after=3)
    async with (
        make_client(api) as client,
        client.batch([f"p:{i % 3 + 1}" for i in range(20)], max_concurrency=1) as batch,
    ):
        results = [r async for r in batch]
    assert batch.stop_reason == "permission_denied"
    assert api.creates == 3
    assert sum(r.ok for r in results) == 3
    denied = [r for r in results if isinstance(r.error, PermissionDeniedError)]
    assert len(denied) == 1
    refused = [i for i, _ in batch.unsubmitted()]
    assert denied[0].index in refused and len(refused) <= 2  # plus at most the one read ahead
    assert batch.counts.total_seen < 20


@pytest.mark.anyio
async def test_a_slow_consumer_pauses_submission() -> None:
    """With nobody consuming, submitted-but-unconsumed jobs stay bounded by the buffer."""
    api = FakeAPI()
    async with make_client(api) as client:
        async with client.batch(["p:1"] * 500, max_concurrency=4, buffer=8) as batch:
            for _ in range(3000):
                await anyio.lowlevel.checkpoint()
            assert batch.counts.total_seen < 40
            assert api.creates <= 8 + 2 * 4 + 1
            first = [await batch.__anext__() for _ in range(5)]
            assert len(first) == 5
        assert batch.stop_reason == "cancelled"
        consumed = {r.generation_id for r in first}
        pending = {p.generation_id for p in batch.pending()}
        assert consumed | pending == set(api.jobs)
        assert not consumed & pending


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(12))
async def test_cancelling_at_a_random_moment_loses_no_id(seed: int) -> None:
    """Cancelled anywhere, the batch leaves no task behind and every created id is accounted."""
    rng = random.Random(seed)
    api = FakeAPI()
    consumed: set[str | None] = set()
    prompts = [f"p:{rng.randint(1, 6)}" for _ in range(60)]
    async with make_client(api) as client:
        with anyio.CancelScope() as scope:
            stop_after = rng.randint(0, 400)
            async with client.batch(prompts, max_concurrency=rng.randint(1, 8)) as batch:
                steps = 0
                async for result in batch:
                    consumed.add(result.generation_id)
                    steps += 1
                    if steps * 7 >= stop_after:
                        if rng.random() < 0.5:
                            scope.cancel()
                            await anyio.lowlevel.checkpoint()
                        break
    pending = {p.generation_id for p in batch.pending()}
    assert pending | consumed >= set(api.jobs)
    assert not pending & consumed
    assert batch.uncertain() == []
    seen = {i for i, _ in batch.unsubmitted()}
    assert all(0 <= i < batch.counts.total_seen for i in seen)


@pytest.mark.anyio
async def test_a_create_in_flight_at_cancellation_is_shielded_and_recorded() -> None:
    """Cancelling while a create is on the wire waits (bounded) for its id and lists it."""
    api = FakeAPI()
    release = anyio.Event()
    sent = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sent.set()
            await release.wait()
        return api(request)

    async with make_client(handler) as client:
        with anyio.CancelScope() as scope:
            async with client.batch(["p:3"], create_grace=30) as batch:
                await sent.wait()
                scope.cancel()
                # the create is answered only after the cancellation
                release.set()
                await anyio.lowlevel.checkpoint()
    assert [p.generation_id for p in batch.pending()] == ["g1"]
    assert batch.uncertain() == []


@pytest.mark.anyio
async def test_a_create_that_outlives_the_grace_is_reported_uncertain() -> None:
    """When the shielded create does not come back within ``create_grace``, it is uncertain."""
    sent = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.set()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with make_client(handler) as client:
        with anyio.CancelScope() as scope:
            async with client.batch(["p:1", "p:2"], create_grace=0.01, max_concurrency=1) as b:
                await sent.wait()
                scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert [i for i, _ in b.uncertain()] == [0]
    assert [i for i, _ in b.unsubmitted()] == [1]
    assert b.pending() == []
    assert b.counts.uncertain == 1


@pytest.mark.anyio
async def test_a_job_timeout_reports_the_id_and_keeps_it_pending(api: FakeAPI) -> None:
    """A job past ``job_timeout`` yields WaitTimeoutError with its id and stays in pending()."""
    async with (
        make_client(api) as client,
        client.batch(["stuck", "p:1"], job_timeout=0.05) as batch,
    ):
        results = {r.index: r async for r in batch}
    error = results[0].error
    assert isinstance(error, WaitTimeoutError)
    assert error.generation_id == results[0].generation_id
    assert results[1].ok
    assert [p.index for p in batch.pending()] == [0]


@pytest.mark.anyio
async def test_the_batch_timeout_stops_everything_and_times_out_what_is_tracked() -> None:
    """After ``batch_timeout`` the tracked jobs come back timed out; the rest is unsubmitted."""
    api = FakeAPI()

    def inputs() -> Iterator[str]:
        yield "stuck"
        yield "stuck"
        while True:
            yield "p:1"

    async with (
        make_client(api) as client,
        client.batch(inputs(), batch_timeout=0.1, buffer=10_000) as batch,
    ):
        results = [r async for r in batch]
    assert batch.stop_reason == "batch_timeout"
    timed_out = [r for r in results if isinstance(r.error, WaitTimeoutError)]
    assert {r.index for r in timed_out} >= {0, 1}
    assert {p.index for p in batch.pending()} == {r.index for r in timed_out}


@pytest.mark.anyio
async def test_max_generations_caps_the_creates(api: FakeAPI) -> None:
    """``max_generations`` stops submitting once that many generations were created."""
    async with make_client(api) as client, client.batch(["p:1"] * 10, max_generations=3) as batch:
        results = [r async for r in batch]
    assert api.creates == 3 and len(results) == 3
    assert batch.stop_reason == "max_generations"
    assert [i for i, _ in batch.unsubmitted()] == [3]


@pytest.mark.anyio
async def test_credit_budget_with_an_estimate_stops_before_overspending(api: FakeAPI) -> None:
    """With ``estimated_credits_per_job`` the guard never commits beyond the budget."""
    async with (
        make_client(api) as client,
        client.batch(["p:2"] * 10, credit_budget=250, estimated_credits_per_job=100) as batch,
    ):
        results = [r async for r in batch]
    assert api.creates == 2 and len(results) == 2
    assert batch.stop_reason == "credit_budget"
    assert batch.counts.credits_used == 200


@pytest.mark.anyio
async def test_credit_budget_without_an_estimate_probes_one_job_at_a_time(api: FakeAPI) -> None:
    """Until a job's cost is known only one job is in flight; then the max cost is used."""
    async with (
        make_client(api) as client,
        client.batch(["p:3"] * 10, credit_budget=350, max_concurrency=8) as batch,
    ):
        results = [r async for r in batch]
    assert api.creates == 3 and len(results) == 3
    kinds = [kind for kind, _ in api.log]
    assert kinds[:2] == ["create", "done"]
    assert batch.counts.credits_used == 300
    assert batch.stop_reason == "credit_budget"


@pytest.mark.anyio
async def test_async_iterable_inputs_are_read_lazily(api: FakeAPI) -> None:
    """An async generator is consumed lazily and its inputs become results."""
    produced = 0

    async def source() -> AsyncGenerator[str, None]:
        nonlocal produced
        for _ in range(1000):
            produced += 1
            yield "p:1"

    async with make_client(api) as client, contextlib.aclosing(source()) as inputs:
        async with client.batch(inputs, max_generations=5, buffer=2) as batch:
            results = [r async for r in batch]
        assert len(results) == 5 and all(r.ok for r in results)
        assert produced == 6


@pytest.mark.anyio
async def test_items_with_an_id_are_only_tracked(api: FakeAPI) -> None:
    """A BatchItem carrying a generation id is polled, not submitted; its key comes back."""
    api.jobs["old"] = {"prompt": "p:2", "left": 2}
    items = [BatchItem(generation_id="old", key="line-7"), BatchItem(generation_id="nope")]
    async with make_client(api) as client:
        results = {r.index: r for r in await collect(client, items)}
    assert api.creates == 0
    assert results[0].ok and results[0].key == "line-7"
    assert isinstance(results[1].error, NotFoundError)
    assert results[1].generation_id == "nope"


@pytest.mark.anyio
async def test_as_completed_yields_batch_results(api: FakeAPI) -> None:
    """``as_completed(ids)`` yields the same BatchResult type, in completion order."""
    api.jobs["a"] = {"prompt": "p:3", "left": 3}
    api.jobs["b"] = {"prompt": "p:1", "left": 1}
    async with (
        make_client(api) as client,
        client.as_completed(["a", "b"], max_concurrency=1) as gens,
    ):
        results = [r async for r in gens]
    assert [r.generation_id for r in results] == ["b", "a"]
    assert all(isinstance(r, BatchResult) and r.ok for r in results)


class RecordingObserver(NullObserver):
    def __init__(self, api: FakeAPI) -> None:
        self.api = api
        self.calls: list[tuple[str, int]] = []
        self.events: list[JobEvent] = []
        self.progress = 0

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        assert len([k for k, _ in self.api.log if k == "create"]) == len(
            [c for c in self.calls if c[0] == "before"]
        )
        self.calls.append(("before", index))

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        self.calls.append(("after", index))

    async def on_result(self, result: BatchResult) -> None:
        self.calls.append(("result", result.index))

    def on_event(self, index: int, event: JobEvent, generation: Generation | None) -> None:
        self.events.append(event)

    def on_progress(self, counts: object) -> None:
        self.progress += 1


@pytest.mark.anyio
async def test_observer_hooks_run_in_order(api: FakeAPI) -> None:
    """before_submit precedes the create, after_submit follows it, on_result precedes yield."""
    observer = RecordingObserver(api)
    async with (
        make_client(api) as client,
        client.batch(["p:1", "p:2"], observer=observer, max_concurrency=1) as batch,
    ):
        async for result in batch:
            assert observer.calls[-1] == ("result", result.index)
    for index in (0, 1):
        order = [c for c in observer.calls if c[1] == index]
        assert [c[0] for c in order] == ["before", "after", "result"]
    assert JobEvent.SUBMITTED in observer.events and JobEvent.SUCCEEDED in observer.events
    assert observer.progress > 0


@pytest.mark.anyio
async def test_an_exception_in_a_hook_ends_the_batch(api: FakeAPI) -> None:
    """A programming error in an observer hook is raised out of the batch."""

    class Broken(NullObserver):
        async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
            raise KeyError("journal bug")

    async with make_client(api) as client:
        with pytest.raises(KeyError):
            await collect(client, ["p:1"] * 5, observer=Broken())


@pytest.mark.anyio
async def test_a_wrong_input_type_is_a_programming_error(api: FakeAPI) -> None:
    """An input that is no request, prompt, mapping or item raises TypeError."""
    async with make_client(api) as client:
        with pytest.raises(TypeError):
            await collect(client, ["p:1", 42])


@pytest.mark.anyio
async def test_leaving_without_iterating_cancels_cleanly(api: FakeAPI) -> None:
    """Entering and leaving at once stops the batch and reports read inputs as unsubmitted."""
    async with make_client(api) as client, client.batch(["p:1"] * 3) as batch:
        pass
    assert batch.stop_reason == "cancelled"
    assert {p.generation_id for p in batch.pending()} == set(api.jobs)


def test_bad_options_are_rejected() -> None:
    """Nonsense options fail fast with ValueError / TypeError."""
    client = AsyncVeoClient("key", base_url=BASE)
    with pytest.raises(ValueError, match="max_concurrency"):
        client.batch([], max_concurrency=0)
    with pytest.raises(ValueError, match="buffer"):
        client.batch([], buffer=0)
    with pytest.raises(ValueError, match="job_timeout"):
        client.batch([], job_timeout=-1)
    with pytest.raises(TypeError, match="iterable"):
        client.batch("just one prompt")


@pytest.mark.anyio
async def test_iterating_outside_async_with_is_an_error(api: FakeAPI) -> None:
    """Using the batch without ``async with`` raises a clear RuntimeError."""
    async with make_client(api) as client:
        batch = client.batch(["p:1"])
        with pytest.raises(RuntimeError, match="async with"):
            await batch.__anext__()


class _SpyPolicy(PollPolicy):
    """Records how each completion was learned."""

    def __init__(self) -> None:
        super().__init__()
        self.exact: list[float] = []
        self.bounds: list[float] = []
        self._inside = False

    def observe(self, seconds_to_complete: float, prior_seconds: float = 45.0) -> None:
        if not self._inside:
            self.exact.append(seconds_to_complete)
        super().observe(seconds_to_complete, prior_seconds)

    def observe_at_most(
        self,
        seconds_to_complete: float,
        prior_seconds: float = 45.0,
        *,
        fallback_seconds: float | None = None,
    ) -> None:
        self.bounds.append(seconds_to_complete)
        self._inside = True
        try:
            super().observe_at_most(
                seconds_to_complete, prior_seconds, fallback_seconds=fallback_seconds
            )
        finally:
            self._inside = False


@pytest.mark.anyio
async def test_a_job_found_done_at_its_first_poll_teaches_an_upper_bound(api: FakeAPI) -> None:
    """Seen generating, then done: a duration. Found done with no such sighting: a bound."""
    policy = _SpyPolicy()
    async with make_client(api) as client:
        results = await collect(
            client, ["p:1", "p:1", "p:3"], poll_policy=policy, max_concurrency=1
        )
    assert all(r.ok for r in results)
    assert len(policy.bounds) == 2  # the two found done at their first poll
    assert len(policy.exact) == 1  # the one seen generating twice first
    assert policy.observations == 3


@pytest.mark.anyio
async def test_a_deep_server_queue_is_not_rate_bound(api: FakeAPI) -> None:
    """Under a held rate, polls are saved (first poll late) unless the server has a deep
    queue of this batch's jobs: then a create held back only joins the queue later."""
    async with make_client(api) as client:
        batch = client.batch(["p:1"], requests_per_second=1.0)
        limiter, planner = batch._runner._limiter, batch._runner.planner
        queue = planner.queue
        assert limiter is not None and queue is not None
        limiter._held_at = _timing.monotonic()  # the client-side rate is holding requests
        assert planner.rate_bound()
        queue.saw_started(1)
        queue.saw_queued(5, waited=60.0)  # saturated: about 2-5 generate at once
        assert queue.saturated and queue.concurrency is not None
        planner.created = 2 * queue.concurrency - 1
        assert planner.rate_bound()
        planner.created = 2 * queue.concurrency
        assert not planner.rate_bound()


@pytest.mark.anyio
async def test_the_back_off_after_a_failed_poll_follows_the_time_scale() -> None:
    """A status request that failed (after the client's retries) is tried again 2 service
    seconds later: 2 ms of wall time at time_scale 0.001, not 2 s."""
    _timing.set_no_waiting(False)
    polls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "g1", "status": "queued"})
        polls.append(anyio.current_time())
        if len(polls) == 1:
            return httpx.Response(503, json={"message": "busy"})
        video = {"url": "https://cdn.test/g1.mp4"}
        return httpx.Response(200, json={"id": "g1", "status": "completed", "video": video})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = RetryConfig(max_attempts=1)
    async with AsyncVeoClient(
        "key", base_url=BASE, http_client=http, retry=retry, time_scale=0.001
    ) as client:
        with anyio.fail_after(5):
            results = await collect(client, ["one"])
    assert results[0].ok and len(polls) == 2
    assert polls[1] - polls[0] < 0.5


async def _batch_on_emulator(
    config: Any, prompts: list[str], *, generations: bool
) -> tuple[list[Any], dict[str, Any]]:
    """Run ``prompts`` as one batch against an in-process emulator with ``config`` (real
    waiting, the policy told its time scale); return the results and the emulator's stats."""
    from veo_async.emulator import create_app

    _timing.set_no_waiting(False)
    app = create_app(config)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    async with AsyncVeoClient("key", base_url=BASE, http_client=http) as client:
        results = await collect(
            client, prompts, poll_policy=PollPolicy(time_scale=config.time_scale)
        )
    await http.aclose()
    return results, app.state.emulator.stats(include_generations=generations)


@pytest.mark.anyio
async def test_against_the_emulator_with_a_concurrency_limit() -> None:
    """In-process emulator, 120 jobs behind a limit of 10: all done, none twice, few polls."""
    from veo_async.emulator import EmulatorConfig

    results, stats = await _batch_on_emulator(
        EmulatorConfig(time_scale=0.0005, max_concurrent=10, seed=3),
        [f"clip {i}" for i in range(120)],
        generations=False,
    )
    assert len(results) == 120 and all(r.ok for r in results)
    assert stats["generations_created"] == 120
    assert stats["duplicate_prompts"] == {}
    # the queue model keeps polls of jobs waiting for a server slot rare
    assert stats["poll_requests"] / 120 < 6


# ---------------------------------------------------------------------------- issue 13: guards


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        # (budget, spent, in_flight, settled_unknown, estimate, largest) -> verdict
        ((3, 0, 0, 0, 1, None), "go"),
        ((3, 0, 2, 0, 1, None), "go"),  # 2 charged at 1, one more fits exactly
        ((3, 0, 3, 0, 1, None), "wait"),  # full, but an in-flight cost may come in lower
        ((3, 0, 0, 3, 1, None), "stop"),  # full of jobs whose cost will never be known
        ((3, 0, 1, 2, 1, None), "wait"),
        ((10, 4, 0, 1, 1, 4), "stop"),  # unknown costs count as the largest seen (4 > 1)
        ((10, 4, 0, 0, 1, 4), "go"),
        ((12, 4, 0, 1, 4, 4), "go"),
        ((12, 4, 0, 1, 5, 4), "stop"),  # ... or as the estimate when that is larger
        ((3, 0, 0, 0, None, None), "go"),  # nothing known: one job to learn the cost
        ((3, 0, 1, 0, None, None), "wait"),  # ... and only one at a time
        ((3, 0, 0, 1, None, None), "stop"),  # its cost stayed unknown: cannot guard on
        ((3, 2, 0, 0, None, 2), "stop"),
        ((3, 3, 0, 0, 0, 0), "stop"),  # free jobs, but the budget is spent
        ((0, 0, 0, 0, None, None), "stop"),  # a zero budget submits nothing
        ((0, 0, 0, 0, 0, None), "stop"),
        ((1e6, 0, 0, 0, 1e6 / 3, None), "go"),
        ((1e6, 0, 2, 0, 1e6 / 3, None), "go"),  # rounding does not refuse the third job
        ((1e6, 0, 3, 0, 1e6 / 3, None), "wait"),
    ],
)
def test_the_credit_guard_arithmetic(args: tuple[Any, ...], verdict: str) -> None:
    """Unknown costs are charged at max(estimate, largest seen) and never released."""
    from veo_async.batch._guard import credit_verdict

    assert credit_verdict(*args).value == verdict


@pytest.mark.parametrize("name", ["credit_budget", "estimated_credits_per_job"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, -0.5, True, "3"])
def test_nonsense_credit_options_are_rejected(name: str, value: Any) -> None:
    """A NaN, infinite, negative or non-numeric budget or estimate fails at construction."""
    client = AsyncVeoClient("key", base_url=BASE)
    with pytest.raises((ValueError, TypeError), match=name):
        client.batch(["p:1"], **cast("dict[str, Any]", {name: value}))
    batch = client.batch(["p:1"], **cast("dict[str, Any]", {name: 0}))
    assert getattr(batch.options, name) == 0


def _caused_by(error: BaseException, kind: type) -> bool:
    """Whether ``kind`` is in the cause chain of ``error`` (or named in its message)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return kind.__name__ in str(error)


def _with_cost(doc: dict[str, Any], cost: Any) -> dict[str, Any]:
    return {**doc, "meta": {"usage": {"credits_used": cost}}}


@pytest.mark.anyio
async def test_the_guard_asks_again_once_a_slot_is_free() -> None:
    """A create that passed the guard while waiting for a slot is checked again: the job
    ahead came back costing the whole budget, so nothing more is sent."""
    creates = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal creates
        if request.method == "POST":
            creates += 1
            gid = f"g{creates}"
            # meanwhile the next input passes the guard (1 credit estimated) and waits
            await anyio.sleep(0.05)
            return httpx.Response(200, json=_with_cost({"id": gid, "status": "queued"}, 5))
        gid = request.url.params["generation_id"]
        done = {"id": gid, "status": "completed", "video": {"url": "https://cdn.test/v.mp4"}}
        return httpx.Response(200, json=_with_cost(done, 5))

    async with make_client(handler) as client:
        results = await collect(
            client, ["a", "b", "c"], credit_budget=5, estimated_credits_per_job=1, max_concurrency=1
        )
    assert creates == 1 and len(results) == 1 and results[0].ok


@pytest.mark.anyio
async def test_a_timed_out_job_of_unknown_cost_stops_the_guard_without_hanging() -> None:
    """No estimate and a job that times out before saying what it cost: the guard cannot
    know what is left, so it stops (it used to wait for that cost forever)."""
    api = FakeAPI()
    async with make_client(api) as client:
        with anyio.fail_after(10):
            async with client.batch(
                ["stuck", "p:1", "p:1"], credit_budget=1000, job_timeout=0.05
            ) as batch:
                results = [r async for r in batch]
    assert api.creates == 1 and len(results) == 1
    assert isinstance(results[0].error, WaitTimeoutError)
    assert batch.stop_reason == "credit_budget"
    assert [i for i, _ in batch.unsubmitted()] == [1]


@pytest.mark.anyio
@pytest.mark.parametrize("raised", [RecursionError, RuntimeError, httpx.DecodingError])
async def test_any_exception_from_a_create_makes_the_input_uncertain(raised: type) -> None:
    """Defence in depth: a create failing with something that is no VeoError (the request may
    have reached the server) is uncertain, never unsubmitted, and the batch goes on."""
    api = FakeAPI()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and b"odd" in request.content:
            api.log.append(("create", "odd"))
            raise raised("the reply could not be read")
        return api(request)

    async with make_client(handler) as client, client.batch(["p:1", "odd", "p:2"]) as batch:
        results = {r.index: r async for r in batch}
    assert sorted(results) == [0, 1, 2]
    error = results[1].error
    assert isinstance(error, CreateOutcomeUnknownError) and _caused_by(error, raised)
    assert [i for i, _ in batch.uncertain()] == [1] and batch.unsubmitted() == []
    assert results[0].ok and results[2].ok and batch.stop_reason is None
    assert [p for kind, p in api.log if kind == "create"].count("odd") == 1


@pytest.mark.anyio
async def test_any_exception_from_a_poll_fails_that_job_only() -> None:
    """A status request failing with something that is no VeoError is a failed poll: retried
    with back-off, then that job is a failed result with the cause; the others complete."""
    api = FakeAPI()
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        if request.method == "GET" and request.url.params["generation_id"] == "g2":
            polls += 1
            raise RecursionError("maximum recursion depth exceeded")
        return api(request)

    async with make_client(handler) as client:
        with anyio.fail_after(10):
            async with client.batch(["p:1", "p:2", "p:3"], max_poll_failures=3) as batch:
                results = {r.index: r async for r in batch}
    bad = results[1]
    assert bad.generation_id == "g2" and not bad.ok
    assert isinstance(bad.error, VeoError) and _caused_by(bad.error, RecursionError)
    assert 3 <= polls <= 3 * 2  # one per allowed failure, each retried by the client or not
    assert results[0].ok and results[2].ok
    assert batch.stop_reason is None and batch.counts.failed == 1


@pytest.mark.anyio
async def test_a_blank_tracked_id_fails_at_once_without_a_request(api: FakeAPI) -> None:
    """A BatchItem with a blank id cannot be polled: a failed result, no retry, no request."""
    async with make_client(api) as client:
        results = await collect(client, [BatchItem(generation_id="  "), "p:1"])
    by_index = {r.index: r for r in results}
    assert isinstance(by_index[0].error, RequestValidationError)
    assert by_index[1].ok and api.polls == 1


# ---------------------------------------------------------------------------- issue 16: the tail


@pytest.mark.anyio
async def test_the_last_jobs_of_a_batch_are_noticed_within_about_a_second() -> None:
    """The final stretch: once every input is submitted and at most four jobs are left, each
    past its shortest plausible duration is looked at every second (service time), so the
    last job (the batch's makespan) is noticed within about a second of completing, not after
    the planner's growing gaps (2.4 to 3.4 s at N = 100, issue 16)."""
    from veo_async.emulator import EmulatorConfig

    scale = 0.05
    with anyio.fail_after(60):
        results, stats = await _batch_on_emulator(
            EmulatorConfig(time_scale=scale, max_concurrent=8, seed=11),
            [f"tail {i}" for i in range(12)],
            generations=True,
        )
    assert len(results) == 12 and all(r.ok for r in results)
    assert stats["generations_created"] == 12
    gens = stats["generations"]
    last_done = max(g["completed_at"] for g in gens)
    last_noticed = max(g["first_completed_poll_at"] for g in gens)
    assert (last_noticed - last_done) / scale <= 1.6  # the makespan: within about a second
    assert stats["poll_requests"] / 12 < 8  # a few more looks at the last jobs, not a flood
