"""The JobStore protocol, run against both stores: SQLite (asyncio, trio) and Redis (asyncio)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from veo_async import VeoError
from veo_async.stores import (
    TRANSITIONS,
    Event,
    JobState,
    JobStore,
    RedisStore,
    SQLiteStore,
    StoreError,
    batch_fingerprint,
    input_key,
    input_keys,
    open_store,
)

from .conftest import STORE_KINDS, worker_command

pytestmark = pytest.mark.anyio


def requests(n: int, tag: str = "") -> list[dict[str, Any]]:
    """``n`` distinct request bodies."""
    return [{"model": "google/veo-3.1-t2v", "prompt": f"{tag}prompt {i}"} for i in range(n)]


async def seeded(store: JobStore, n: int, tag: str = "") -> list[str]:
    """Add ``n`` inputs to ``store``; returns their keys."""
    reqs = requests(n, tag)
    keys = input_keys(reqs)
    assert await store.add_inputs(zip(keys, reqs, strict=True)) == keys
    return keys


async def assert_counts_match(store: JobStore) -> None:
    """The per-state counters agree with the jobs themselves."""
    tally = Counter(job.state for job in await store.jobs())
    counts = await store.counts()
    assert {s: n for s, n in counts.items() if n} == dict(tally)


# --------------------------------------------------------------------------- pure helpers


def test_input_keys_are_content_hashes_independent_of_order() -> None:
    """Keys depend on the request only: reordering keeps them, repeats are numbered, and the
    key is the CLI journal's request_sha256 (json.dumps with sorted keys)."""
    a = {"prompt": "a fox", "model": "m"}
    b = {"model": "m", "prompt": "a cat"}
    assert input_keys([a, b]) == list(reversed(input_keys([b, a])))
    same = input_keys([a, {"prompt": "a fox", "model": "m"}, b])
    assert same[1] == same[0] + ".2" and len(set(same)) == 3
    assert input_key(a) == input_key(dict(reversed(list(a.items()))))
    from veo_async._inputs import body_hash
    from veo_async._models import CustomVideoRequest

    req = CustomVideoRequest(model="google/veo-3.1-t2v", prompt="a fox")
    assert input_key(req.to_body()) == body_hash(req)
    assert batch_fingerprint(same) == batch_fingerprint(reversed(same))
    assert batch_fingerprint(same) != batch_fingerprint(same[:2])


def test_transition_table_never_leaves_a_final_download_or_an_open_intent_silently() -> None:
    """Only FILE_LOST leaves ``downloaded``; only the create's outcome events leave
    ``submitting`` (so a job with an intent is never silently resubmitted)."""
    leaving_downloaded = {e for e, t in TRANSITIONS.items() if JobState.DOWNLOADED in t.sources}
    assert leaving_downloaded == {Event.FILE_LOST}
    leaving_submitting = {e for e, t in TRANSITIONS.items() if JobState.SUBMITTING in t.sources}
    assert leaving_submitting == {
        Event.NOT_SENT,
        Event.SUBMITTED,
        Event.UNCERTAIN,
        Event.ABANDONED,
        Event.REFUSED,
    }
    assert JobState.SUBMITTING not in TRANSITIONS[Event.RESET].sources


def test_store_errors_are_veo_errors() -> None:
    """Store errors fit the SDK's error tree (one root: VeoError)."""
    from veo_async.stores import StoreUnavailableError

    assert issubclass(StoreUnavailableError, StoreError)
    assert issubclass(StoreError, VeoError)


# --------------------------------------------------------------------------- conformance


@STORE_KINDS
async def test_add_inputs_is_idempotent_and_queues_each_input_once(store: JobStore) -> None:
    """Adding the same inputs twice adds nothing and queues no second work item."""
    keys = await seeded(store, 5)
    reqs = requests(7)
    again = await store.add_inputs(zip(input_keys(reqs), reqs, strict=True))
    assert again == input_keys(reqs)[5:]
    jobs = await store.jobs()
    assert [j.key for j in jobs] == input_keys(reqs)
    assert [j.seq for j in jobs] == list(range(1, 8))
    assert all(j.state is JobState.PENDING and j.request for j in jobs)
    assert (await store.counts())[JobState.PENDING] == 7
    items = await store.take_work("w1", count=100)
    assert sorted(i.key for i in items) == sorted(input_keys(reqs))
    assert all(i.kind == "submit" for i in items)
    assert await store.take_work("w2", count=100) == []
    assert keys == input_keys(reqs)[:5]


@STORE_KINDS
async def test_a_job_walks_every_step_and_stale_steps_are_refused(store: JobStore) -> None:
    """intent -> id -> finished -> downloaded, each recorded; steps from a wrong state change
    nothing and say so; the counters follow."""
    (key,) = await seeded(store, 1)
    assert not await store.transition(key, Event.SUBMITTED, generation_id="g", status="queued")
    assert await store.claim_intent(key, "w1")
    job = await store.get(key)
    assert job and job.state is JobState.SUBMITTING and job.owner == "w1" and job.attempts == 1
    assert job.intent_at is not None
    assert await store.transition(key, Event.SUBMITTED, generation_id="g-1", status="queued")
    assert not await store.claim_intent(key, "w2")
    assert not await store.transition(key, Event.DOWNLOADED, file="x", sha256="s", size=1)
    assert await store.transition(
        key,
        Event.FINISHED,
        generation_id="g-1",
        status="completed",
        video_url="https://cdn/x.mp4",
        credits=2.5,
        error=None,
    )
    assert await store.transition(key, Event.DOWNLOAD_FAILED, error="truncated")
    assert await store.transition(key, Event.DOWNLOADED, file="a.mp4", sha256="ab", size=42)
    job = await store.get(key)
    assert job is not None
    assert (job.state, job.generation_id, job.video_url, job.credits) == (
        JobState.DOWNLOADED,
        "g-1",
        "https://cdn/x.mp4",
        2.5,
    )
    assert (job.file, job.sha256, job.size, job.error) == ("a.mp4", "ab", 42, None)
    assert job.submitted_at and job.finished_at and job.downloaded_at
    assert not await store.transition(key, Event.RESET)
    assert await store.transition(key, Event.FILE_LOST, error="missing")
    job = await store.get(key)
    assert job and job.state is JobState.COMPLETED and job.file is None and job.size is None
    await assert_counts_match(store)


@STORE_KINDS
async def test_outcomes_of_a_create(store: JobStore) -> None:
    """Refused and not-sent make the job submittable again; uncertain does not until a reset,
    which keeps the earlier id and queues the job as new work; a late id beats uncertain."""
    a, b, c, d = await seeded(store, 4)
    await store.take_work("w", count=10)
    for key in (a, b, c, d):
        assert await store.claim_intent(key, "w")
    assert await store.transition(a, Event.REFUSED, error="400 bad prompt")
    assert await store.transition(b, Event.NOT_SENT)
    assert await store.transition(c, Event.UNCERTAIN, error="connection reset after send")
    assert await store.transition(d, Event.ABANDONED)
    job_d = await store.get(d)
    assert job_d and job_d.state is JobState.UNCERTAIN and "may or may not" in (job_d.error or "")
    assert await store.claim_intent(a, "w2")
    assert await store.claim_intent(b, "w2")
    assert not await store.claim_intent(c, "w2")
    # the id of c arrives late (the worker was slow, not dead): it wins over "uncertain"
    assert await store.transition(c, Event.SUBMITTED, generation_id="g-c", status="queued")
    assert await store.transition(c, Event.FINISHED, generation_id="g-c", status="error",
                                  video_url=None, credits=None, error="policy")  # fmt: skip
    assert (job_c := await store.get(c)) and job_c.state is JobState.FAILED
    assert await store.transition(c, Event.RESET)
    job_c = await store.get(c)
    assert job_c and job_c.state is JobState.PENDING and job_c.previous_ids == ["g-c"]
    assert job_c.generation_id is None and job_c.error is None
    requeued = await store.take_work("w3", count=10)
    assert [(i.key, i.kind) for i in requeued] == [(c, "submit")]
    assert await store.claim_intent(c, "w3")
    assert (job_c := await store.get(c)) and job_c.attempts == 2
    await assert_counts_match(store)


@STORE_KINDS
async def test_unknown_jobs_and_fields_are_errors(store: JobStore) -> None:
    """An unknown key or a field the event does not set raises StoreError; nothing changes."""
    (key,) = await seeded(store, 1)
    with pytest.raises(StoreError, match="not in batch"):
        await store.claim_intent("nope", "w")
    with pytest.raises(StoreError, match="not in batch"):
        await store.transition("nope", Event.NOT_SENT)
    with pytest.raises(StoreError, match="does not set"):
        await store.transition(key, Event.REFUSED, video_url="x")
    assert await store.get("nope") is None
    assert (job := await store.get(key)) and job.state is JobState.PENDING


@STORE_KINDS
async def test_tracked_ids_and_meta(store: JobStore) -> None:
    """Ids added for tracking are submitted jobs with track work; meta values round-trip."""
    keys = await store.add_tracked(["gen-a", "gen-b"])
    assert keys == ["id:gen-a", "id:gen-b"]
    assert await store.add_tracked(["gen-a"]) == []
    job = await store.get("id:gen-a")
    assert job and job.state is JobState.SUBMITTED and job.generation_id == "gen-a"
    assert job.request is None
    items = await store.take_work("w", count=10)
    assert [(i.key, i.kind) for i in items] == [("id:gen-a", "track"), ("id:gen-b", "track")]
    assert await store.get_meta("fingerprint") is None
    await store.set_meta("fingerprint", "abc")
    await store.set_meta("fingerprint", "def")
    assert await store.get_meta("fingerprint") == "def"


@STORE_KINDS
async def test_leases_renew_expire_and_move(store: JobStore) -> None:
    """A renewed lease is not reclaimed; an idle one is, and its old owner learns it lost it;
    acknowledged work is never handed out again."""
    await seeded(store, 3)
    items = await store.take_work("w1", count=3)
    assert len(items) == 3
    assert await store.reclaim("w2", min_idle=5.0) == []
    await anyio.sleep(0.4)
    assert await store.heartbeat("w1", items[:1]) == []
    moved = await store.reclaim("w2", min_idle=0.3)
    assert sorted(i.id for i in moved) == sorted(i.id for i in items[1:])
    assert await store.heartbeat("w1", items) == items[1:]
    await store.ack("w2", moved)
    await store.ack("w1", items[:1])
    await anyio.sleep(0.05)
    assert await store.reclaim("w3", min_idle=0.0) == []
    assert await store.take_work("w3", count=10) == []


@STORE_KINDS
async def test_take_work_waits_for_new_inputs(store: JobStore) -> None:
    """A worker blocked in take_work gets an input added meanwhile, within its wait."""
    got: list[str] = []

    async def taker() -> None:
        got.extend(i.key for i in await store.take_work("w", count=1, wait=3.0))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(taker)
            await anyio.sleep(0.2)
            keys = await seeded(store, 1)
    assert got == keys


@STORE_KINDS
async def test_exactly_one_of_20_tasks_wins_each_intent(store: JobStore) -> None:
    """20 concurrent tasks race for the intent of each of 30 jobs: exactly one wins each."""
    keys = await seeded(store, 30)
    wins: Counter[str] = Counter()
    owners: dict[str, str] = {}

    async def racer(n: int) -> None:
        for key in keys:
            if await store.claim_intent(key, f"task-{n}"):
                wins[key] += 1
                owners[key] = f"task-{n}"

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(racer, n)
    assert wins == Counter(dict.fromkeys(keys, 1))
    for job in await store.jobs():
        assert job.state is JobState.SUBMITTING and job.owner == owners[job.key]
        assert job.attempts == 1
    assert (await store.counts())[JobState.SUBMITTING] == 30


@STORE_KINDS
@pytest.mark.slow
async def test_exactly_one_of_3_processes_wins_each_intent(store_url: str, batch_id: str) -> None:
    """Three real processes add the same inputs and race for every intent: each job is won by
    exactly one of them, and the store agrees on who."""
    n = 60
    outputs: dict[str, str] = {}

    async def run(name: str) -> None:
        result = await anyio.run_process(worker_command("claim", store_url, batch_id, name, n))
        outputs[name] = result.stdout.decode()

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for name in ("p1", "p2", "p3"):
                tg.start_soon(run, name)
    won = {
        line.split()[1]: name
        for name, out in outputs.items()
        for line in out.splitlines()
        if line.startswith("won ")
    }
    total = sum(out.count("won ") for out in outputs.values())
    assert all(out.rstrip().endswith("done") for out in outputs.values())
    assert total == n and len(won) == n
    store = await open_store(store_url, batch_id=batch_id)
    try:
        jobs = await store.jobs()
        assert len(jobs) == n
        assert {j.key: j.owner for j in jobs} == won
        assert all(j.attempts == 1 for j in jobs)
    finally:
        await store.aclose()


@STORE_KINDS
async def test_two_batches_on_one_store_never_cross(store_url: str, kind: str) -> None:
    """Two batches with different (and one shared) inputs: separate jobs, work, counts, meta."""
    a = await open_store(store_url, batch_id="batch-a-" + kind)
    b = await open_store(store_url, batch_id="batch-b-" + kind)
    try:
        reqs_a = requests(3, "a")
        reqs_b = [*requests(2, "b"), reqs_a[0]]
        keys_a, keys_b = input_keys(reqs_a), input_keys(reqs_b)
        await a.add_inputs(zip(keys_a, reqs_a, strict=True))
        await b.add_inputs(zip(keys_b, reqs_b, strict=True))
        shared = keys_a[0]
        assert shared == keys_b[2]
        assert await a.claim_intent(shared, "wa")
        assert await b.claim_intent(shared, "wb")  # the same request in another batch
        await a.set_meta("source", "a.txt")
        assert await b.get_meta("source") is None
        assert sorted(i.key for i in await b.take_work("wb", count=10)) == sorted(keys_b)
        assert sorted(i.key for i in await a.take_work("wa", count=10)) == sorted(keys_a)
        assert [j.key for j in await a.jobs()] == keys_a
        assert [j.key for j in await b.jobs()] == keys_b
        assert (await a.counts())[JobState.PENDING] == 2
        assert (await b.counts())[JobState.SUBMITTING] == 1
        assert await b.reclaim("wb2", min_idle=0.0) != []
        assert all(i.key in keys_a for i in await a.reclaim("wa2", min_idle=0.0))
    finally:
        await a.aclose()
        await b.aclose()


@STORE_KINDS
async def test_open_store_urls(store_url: str, kind: str) -> None:
    """open_store picks the store from the URL; unknown schemes and bad batch ids are errors."""
    store = await open_store(store_url, batch_id="b-1")
    try:
        assert isinstance(store, RedisStore if kind == "redis" else SQLiteStore)
        assert isinstance(store, JobStore)
        assert store.batch_id == "b-1"
    finally:
        await store.aclose()
    with pytest.raises(StoreError, match="unknown store URL"):
        await open_store("postgres://u:pw@h/db", batch_id="b-1")
    with pytest.raises(StoreError, match="invalid batch id"):
        await open_store(store_url, batch_id="a b/c")
