"""Print the OpenTelemetry trace of a small batch against the in-process emulator.

Run: ``python examples/otel_trace.py`` (needs the ``otel`` and ``emulator`` extras plus
``opentelemetry-sdk``). It exports spans to memory and prints them as an indented tree with
their key attributes; with your own SDK setup, the same spans go to your exporter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veo_async.instrumentation.otel import OpenTelemetryInstrumentation
from veo_async.testing import emulated

SHOWN = (
    "veo.input_index",
    "veo.model",
    "veo.generation_id",
    "veo.status",
    "veo.attempt",
    "http.response.status_code",
)


def print_tree(spans: list[ReadableSpan]) -> None:
    """Print spans as a tree, children under their parent, in start order."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    t0 = min(s.start_time or 0 for s in spans)

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            attrs = span.attributes or {}
            shown = " ".join(f"{k.split('.')[-1]}={attrs[k]!s}" for k in SHOWN if k in attrs)
            start = ((span.start_time or 0) - t0) / 1e6
            took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            print(f"{'  ' * depth}{span.name:<14} +{start:7.1f} ms {took:7.1f} ms  {shown}")
            if span.context is not None:
                walk(span.context.span_id, depth + 1)

    walk(None, 0)


async def main() -> None:
    """Generate two videos through a batch and download one, traced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = OpenTelemetryInstrumentation(tracer_provider=provider)
    async with emulated(time_scale=0.002, instrumentation=instrumentation) as service:
        client = service.client
        prompts = ["A red fox trotting through fresh snow", "A paper boat on a rainy street"]
        async with client.batch(prompts, max_concurrency=4) as batch:
            results = [result async for result in batch]
        done = next(r.generation for r in results if r.generation is not None)
        with tempfile.TemporaryDirectory() as folder:
            await client.download(done, Path(folder) / "video.mp4")
    print_tree(list(exporter.get_finished_spans()))


if __name__ == "__main__":
    anyio.run(main)
