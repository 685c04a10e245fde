"""A batch's spans: one ``veo.batch``, a ``veo.job`` per input under it, requests under jobs."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk")

from tests.test_instrumentation import Telemetry
from veo_async import AsyncVeoClient, PollPolicy

PROMPTS = ["a fox in the snow", "an owl at dusk", "a heron in the rain"]


@pytest.mark.anyio
async def test_a_batch_reports_batch_job_and_request_spans(veo_emulator_server: Any) -> None:
    """Against the emulator server: one veo.batch span, one veo.job span per input (children
    of the batch span, with the generation id and final status), and every create and poll
    span a child of its job's span; a completion is detected and its cost recorded."""
    t = Telemetry()
    async with AsyncVeoClient(
        "sk-spans-0123456789",
        base_url=veo_emulator_server.base_url,
        poll_policy=PollPolicy(time_scale=0.001),
        time_scale=0.001,
        instrumentation=t.instrumentation,
    ) as client:
        with anyio.fail_after(30):
            async with client.batch(PROMPTS, max_concurrency=4) as batch:
                results = [r async for r in batch]
    assert sorted(r.index for r in results) == [0, 1, 2] and all(r.ok for r in results)
    (batch_span,) = t.spans("veo.batch")
    jobs = t.spans("veo.job")
    assert len(jobs) == len(PROMPTS)
    assert batch_span.context is not None
    assert all(
        j.parent is not None and j.parent.span_id == batch_span.context.span_id for j in jobs
    )
    by_job = {j.context.span_id: j for j in jobs if j.context is not None}
    ids = {r.generation_id for r in results}
    assert {(j.attributes or {}).get("veo.generation_id") for j in jobs} == ids
    assert {(j.attributes or {}).get("veo.status") for j in jobs} == {"completed"}
    requests = t.spans("veo.create") + t.spans("veo.poll")
    assert len(t.spans("veo.create")) == len(PROMPTS)
    assert len(t.spans("veo.poll")) == sum(r.polls for r in results)
    for request in requests:
        assert request.parent is not None and request.parent.span_id in by_job
        job = by_job[request.parent.span_id]
        # a request of a job is about that job's generation
        assert (request.attributes or {}).get("veo.generation_id") in (
            None,
            (job.attributes or {}).get("veo.generation_id"),
        )
    # each job was found finished by a poll: one detection each
    assert t.metric("veo.detection_delay") == [({}, float(len(PROMPTS)))]
    spent = sum(float(r.generation.credits_used or 0) for r in results if r.generation)
    assert sum(value for _, value in t.metric("veo.credits")) == pytest.approx(spent)
