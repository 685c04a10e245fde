"""Instrumentation hooks (see :mod:`veo_async.instrumentation._protocol`).

``OpenTelemetryInstrumentation`` lives in :mod:`veo_async.instrumentation.otel` and needs the
``otel`` extra; importing this package never imports OpenTelemetry.
"""

from ._protocol import (
    NO_INSTRUMENTATION,
    Attribute,
    Instrumentation,
    NullInstrumentation,
    RequestKind,
    Span,
)

__all__ = [
    "NO_INSTRUMENTATION",
    "Attribute",
    "Instrumentation",
    "NullInstrumentation",
    "RequestKind",
    "Span",
]
