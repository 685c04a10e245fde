"""OpenTelemetry for veo-async: spans for a batch, each job and each request, and metrics.

Install with ``pip install 'veo-async[otel]'`` (the OpenTelemetry API only; bring your own SDK
and exporter), then hand an instance to the client::

    from veo_async.instrumentation.otel import OpenTelemetryInstrumentation

    client = AsyncVeoClient(instrumentation=OpenTelemetryInstrumentation())

Spans: ``veo.batch`` > ``veo.job`` > ``veo.create`` / ``veo.poll`` / ``veo.download`` (one
per attempt). Attributes: ``veo.model``, ``veo.generation_id``, ``veo.status``,
``veo.attempt``, ``http.response.status_code``, ``veo.request_id``, ``veo.input_index``;
``veo.prompt`` only with ``record_prompts=True``. The API key is never an attribute, and error
messages recorded on spans are the SDK's own (the key is redacted from every server-provided
string before it reaches an exception).

Metrics (meter ``veo_async``): ``veo.requests`` (counter, by ``veo.request.kind`` and
``http.response.status_code`` or ``error.type``), ``veo.rate_limited`` (429s, by kind),
``veo.retries`` (by kind), ``veo.detection_delay`` (histogram, seconds: an upper bound, the time
since the previous look that saw the job unfinished, as the API reports no completion time),
``veo.credits`` (counter, by ``veo.model``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "OpenTelemetry support needs the otel extra: pip install 'veo-async[otel]'"
    ) from exc

from ._protocol import Attribute, RequestKind, Span

__all__ = ["OpenTelemetryInstrumentation"]

_VERSION = "0.1.0"


class _OTelSpan:
    """A span handle; a request span also counts itself in ``veo.requests`` when it ends."""

    __slots__ = ("_counter", "_ended", "_failed", "_kind", "_status", "span")

    def __init__(
        self, span: trace.Span, kind: RequestKind | None = None, counter: Any = None
    ) -> None:
        self.span = span
        self._kind = kind
        self._counter = counter
        self._status: int | None = None
        self._failed: str | None = None
        self._ended = False

    def set(self, key: str, value: Attribute | None) -> None:
        if value is None:
            return
        if key == "http.response.status_code" and isinstance(value, int):
            self._status = value
        self.span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        self._failed = type(error).__name__
        self.span.set_attribute("error.type", self._failed)
        self.span.set_status(Status(StatusCode.ERROR, f"{self._failed}: {error}"[:500]))

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._counter is not None and self._kind is not None:
            attrs: dict[str, Attribute] = {"veo.request.kind": self._kind.value}
            if self._status is not None:
                attrs["http.response.status_code"] = self._status
            if self._failed is not None:
                attrs["error.type"] = self._failed
            self._counter.add(1, attrs)
        self.span.end()


class OpenTelemetryInstrumentation:
    """Reports spans and metrics through the OpenTelemetry API.

    ``tracer_provider`` / ``meter_provider`` default to the global ones. ``record_prompts``:
    put each job's prompt on its span (off by default: prompts may be private).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        record_prompts: bool = False,
    ) -> None:
        self._tracer = trace.get_tracer("veo_async", _VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter("veo_async", _VERSION, meter_provider=meter_provider)
        self.record_prompts = record_prompts
        self._requests = meter.create_counter(
            "veo.requests", unit="{request}", description="HTTP requests sent to the API or CDN"
        )
        self._rate_limited = meter.create_counter(
            "veo.rate_limited", unit="{response}", description="429 answers"
        )
        self._retries = meter.create_counter(
            "veo.retries", unit="{request}", description="requests sent again after a failure"
        )
        self._delay = meter.create_histogram(
            "veo.detection_delay",
            unit="s",
            description="upper bound of how late a finished job was noticed",
        )
        self._credits = meter.create_counter(
            "veo.credits", unit="{credit}", description="credits the server reported as spent"
        )

    def start_batch(self) -> Span:
        """A ``veo.batch`` span, child of the current span."""
        return _OTelSpan(self._tracer.start_span("veo.batch", kind=SpanKind.INTERNAL))

    def start_job(
        self, parent: Span | None, index: int, model: str | None, prompt: str | None
    ) -> Span:
        """A ``veo.job`` span, child of the batch span."""
        ctx = trace.set_span_in_context(parent.span) if isinstance(parent, _OTelSpan) else None
        attrs: dict[str, Attribute] = {"veo.input_index": index}
        if model is not None:
            attrs["veo.model"] = model
        if prompt is not None and self.record_prompts:
            attrs["veo.prompt"] = prompt
        return _OTelSpan(self._tracer.start_span("veo.job", context=ctx, attributes=attrs))

    def start_request(self, kind: RequestKind, attempt: int) -> Span:
        """A ``veo.create`` / ``veo.poll`` / ``veo.download`` span for one attempt."""
        span = self._tracer.start_span(
            f"veo.{kind.value}", kind=SpanKind.CLIENT, attributes={"veo.attempt": attempt}
        )
        return _OTelSpan(span, kind, self._requests)

    @contextlib.contextmanager
    def use(self, span: Span | None) -> Iterator[None]:
        """Make ``span`` current for the block (requests inside become its children)."""
        if not isinstance(span, _OTelSpan):
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(span.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def rate_limited(self, kind: RequestKind) -> None:
        """Count a 429."""
        self._rate_limited.add(1, {"veo.request.kind": kind.value})

    def retried(self, kind: RequestKind) -> None:
        """Count a retry."""
        self._retries.add(1, {"veo.request.kind": kind.value})

    def detected(self, delay_seconds: float) -> None:
        """Record a detection delay (upper bound)."""
        if delay_seconds >= 0:
            self._delay.record(delay_seconds)

    def credits_spent(self, credits: float, model: str | None) -> None:
        """Count credits reported by the server."""
        if credits >= 0:
            self._credits.add(credits, {"veo.model": model or "unknown"})
