"""The instrumentation seam: the no-op default and the OpenTelemetry implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from veo_async.instrumentation import NO_INSTRUMENTATION, RequestKind

otel_sdk = pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from veo_async.instrumentation.otel import OpenTelemetryInstrumentation  # noqa: E402


class Telemetry:
    """An instrumentation wired to in-memory span and metric exporters."""

    def __init__(self, *, record_prompts: bool = False) -> None:
        self.spans_out = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.reader])
        self.instrumentation = OpenTelemetryInstrumentation(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            record_prompts=record_prompts,
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans (of one name)."""
        return [s for s in self.spans_out.get_finished_spans() if name in (None, s.name)]

    def metric(self, name: str) -> list[tuple[dict[str, object], float]]:
        """(attributes, value) per data point of one metric (histograms: the count)."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, object], float]] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != name:
                        continue
                    for p in m.data.data_points:
                        value = getattr(p, "value", None)
                        if value is None:
                            value = p.count  # type: ignore[union-attr]
                        out.append((dict(p.attributes or {}), float(value)))
        return out


@pytest.fixture
def telemetry() -> Telemetry:
    """A fresh in-memory OpenTelemetry setup."""
    return Telemetry()


def test_null_instrumentation_is_inert() -> None:
    """The default hooks accept every call and return spans that do nothing."""
    span = NO_INSTRUMENTATION.start_batch()
    job = NO_INSTRUMENTATION.start_job(span, 0, "veo2", "a fox")
    with NO_INSTRUMENTATION.use(job):
        req = NO_INSTRUMENTATION.start_request(RequestKind.POLL, 1)
        req.set("a", 1)
        req.fail(ValueError("x"))
        req.end()
    NO_INSTRUMENTATION.rate_limited(RequestKind.CREATE)
    NO_INSTRUMENTATION.retried(RequestKind.CREATE)
    NO_INSTRUMENTATION.detected(1.0)
    NO_INSTRUMENTATION.credits_spent(5.0, "veo2")
    job.end()
    span.end()


def test_spans_nest_batch_job_request(telemetry: Telemetry) -> None:
    """A request started inside ``use(job)`` is the job's child; the job is the batch's."""
    inst = telemetry.instrumentation
    batch = inst.start_batch()
    job = inst.start_job(batch, 3, "veo2", "a secret prompt")
    with inst.use(job):
        req = inst.start_request(RequestKind.CREATE, 1)
        req.set("http.response.status_code", 200)
        req.set("veo.generation_id", "g-1")
        req.set("ignored", None)
        req.end()
        req.end()  # idempotent
    job.end()
    batch.end()
    (b,) = telemetry.spans("veo.batch")
    (j,) = telemetry.spans("veo.job")
    (r,) = telemetry.spans("veo.create")
    assert j.parent is not None and j.parent.span_id == b.context.span_id
    assert r.parent is not None and r.parent.span_id == j.context.span_id
    assert r.attributes is not None and r.attributes["veo.generation_id"] == "g-1"
    assert "ignored" not in r.attributes
    assert j.attributes is not None and j.attributes["veo.input_index"] == 3
    assert "veo.prompt" not in j.attributes  # not opted in
    assert telemetry.metric("veo.requests") == [
        ({"veo.request.kind": "create", "http.response.status_code": 200}, 1.0)
    ]


def test_prompt_recorded_only_when_opted_in() -> None:
    """``record_prompts=True`` puts the prompt on the job span."""
    t = Telemetry(record_prompts=True)
    t.instrumentation.start_job(None, 0, "veo2", "a fox").end()
    (j,) = t.spans("veo.job")
    assert j.attributes is not None and j.attributes["veo.prompt"] == "a fox"


def test_failed_request_sets_error_status_and_type(telemetry: Telemetry) -> None:
    """A failed request span has ERROR status and is counted by error type."""
    from opentelemetry.trace import StatusCode

    inst = telemetry.instrumentation
    req = inst.start_request(RequestKind.POLL, 2)
    req.fail(TimeoutError("deadline of 60 s passed"))
    req.end()
    (r,) = telemetry.spans("veo.poll")
    assert r.status.status_code is StatusCode.ERROR
    assert r.attributes is not None and r.attributes["veo.attempt"] == 2
    assert telemetry.metric("veo.requests") == [
        ({"veo.request.kind": "poll", "error.type": "TimeoutError"}, 1.0)
    ]


def test_metrics_counters_and_histogram(telemetry: Telemetry) -> None:
    """429s, retries, credits and detection delays land in their instruments."""
    inst = telemetry.instrumentation
    inst.rate_limited(RequestKind.CREATE)
    inst.rate_limited(RequestKind.CREATE)
    inst.retried(RequestKind.POLL)
    inst.credits_spent(200.0, "veo2")
    inst.credits_spent(-1.0, "veo2")  # nonsense: ignored
    inst.detected(2.5)
    inst.detected(-1.0)  # nonsense: ignored
    assert telemetry.metric("veo.rate_limited") == [({"veo.request.kind": "create"}, 2.0)]
    assert telemetry.metric("veo.retries") == [({"veo.request.kind": "poll"}, 1.0)]
    assert telemetry.metric("veo.credits") == [({"veo.model": "veo2"}, 200.0)]
    assert telemetry.metric("veo.detection_delay") == [({}, 1.0)]


def test_use_with_foreign_span_is_harmless(telemetry: Telemetry) -> None:
    """``use`` with ``None`` or another implementation's span changes nothing."""
    inst = telemetry.instrumentation
    with inst.use(None), inst.use(NO_INSTRUMENTATION.start_batch()):
        inst.start_request(RequestKind.DOWNLOAD, 1).end()
    (r,) = telemetry.spans("veo.download")
    assert r.parent is None


KEY = "sk-otel-SECRET-0123456789abcdef"


@pytest.mark.anyio
async def test_client_reports_create_poll_download_spans(
    veo_emulator_server: Any, tmp_path: Path
) -> None:
    """A real generate + download against the emulator server gives one create span, poll
    spans and a download span, with ids and statuses; the key is in no span or metric."""
    from veo_async import AsyncVeoClient, PollPolicy

    t = Telemetry()
    async with AsyncVeoClient(
        KEY,
        base_url=veo_emulator_server.base_url,
        poll_policy=PollPolicy(time_scale=0.001),
        time_scale=0.001,
        instrumentation=t.instrumentation,
    ) as client:
        video = await client.generate(prompt="a fox in the snow", duration=5)
        saved = await client.download(video, tmp_path / "fox.mp4")
    (create,) = t.spans("veo.create")
    polls = t.spans("veo.poll")
    (download,) = t.spans("veo.download")
    assert create.attributes is not None
    assert create.attributes["veo.generation_id"] == video.id
    assert create.attributes["http.response.status_code"] in (200, 201)
    assert polls and polls[-1].attributes is not None
    assert polls[-1].attributes["veo.status"] == "completed"
    assert download.attributes is not None
    assert download.attributes["veo.download.bytes"] == saved.size
    kinds = {attrs["veo.request.kind"]: value for attrs, value in t.metric("veo.requests")}
    assert kinds["create"] == 1 and kinds["poll"] == len(polls) and kinds["download"] == 1
    dump = repr([(s.name, dict(s.attributes or {}), s.status.description) for s in t.spans()])
    assert KEY not in dump and "otel-SECRET" not in dump


@pytest.mark.anyio
async def test_client_reports_failed_attempts_and_retries() -> None:
    """A poll answered 500 twice then 200 gives three poll spans (two failed) and two retries."""
    from tests.hostile import HostileServer, Recorded, Reply, generation
    from veo_async import AsyncVeoClient, RetryConfig

    answers = iter([500, 500, 200])

    def script(req: Recorded) -> Reply:
        status = next(answers)
        if status != 200:
            return Reply.json({"message": f"oops {KEY}"}, status=status)
        return Reply.json(generation("g-1", "generating"))

    t = Telemetry()
    with HostileServer(script) as server:
        async with AsyncVeoClient(
            KEY,
            base_url=server.url,
            retry=RetryConfig(max_attempts=3, initial_backoff=0.001, max_backoff=0.002),
            instrumentation=t.instrumentation,
        ) as client:
            got = await client.get("g-1")
    assert got.status == "generating"
    polls = t.spans("veo.poll")
    assert [p.attributes["veo.attempt"] for p in polls if p.attributes] == [1, 2, 3]
    assert [p.attributes.get("http.response.status_code") for p in polls if p.attributes] == [
        500,
        500,
        200,
    ]
    assert t.metric("veo.retries") == [({"veo.request.kind": "poll"}, 2.0)]
    dump = repr([(s.name, dict(s.attributes or {}), s.status.description) for s in polls])
    assert KEY not in dump
