"""Traces: one span per request and one per attempt, exported to Logfire or any OTLP collector.

Spans are built from the finished request log entry, with the times the attempts recorded, so
nothing runs on the request path when tracing is off and little when it is on. No secrets and no
content go into spans (content only with QALBY_LOG_CONTENT on).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from providers import fallback

logger = logging.getLogger("qalby.tracing")

_tracer: trace.Tracer | None = None


def setup() -> None:
    """Configure the exporter the environment asks for; without one, tracing stays off."""
    global _tracer
    if settings.LOGFIRE_WRITE_TOKEN:
        import logfire

        logfire.configure(
            token=settings.LOGFIRE_WRITE_TOKEN, service_name=settings.OTEL_SERVICE_NAME, console=False,
            send_to_logfire=True,
        )
        _tracer = trace.get_tracer("qalby")
        logger.info("traces go to Logfire")
    elif settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout), as operators expect.
        provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        use_provider(provider)
        logger.info("traces go to %s", settings.OTEL_EXPORTER_OTLP_ENDPOINT)


_provider = None


def use_provider(provider) -> None:
    """Send spans to this TracerProvider (setup() and tests)."""
    global _tracer, _provider
    _provider, _tracer = provider, provider.get_tracer("qalby")


def flush(timeout_ms: int = 5000) -> None:
    if _provider is not None and hasattr(_provider, "force_flush"):
        _provider.force_flush(timeout_ms)


def disable() -> None:
    global _tracer, _provider
    _tracer = _provider = None


def _served_by(entry) -> dict[str, str | int]:
    served = fallback.served(entry.attempts)
    if served is None:
        return {}
    return {"qalby.provider": served.provider_uid, "qalby.model": served.model, "qalby.fallbacks": served.index}


def export(entry) -> None:
    """The spans of one finished request (a requestlogs Entry)."""
    if _tracer is None:
        return
    wall_start = time.time_ns() - int((time.monotonic() - entry.started) * 1e9)

    def at(monotonic: float) -> int:
        return wall_start + int((monotonic - entry.started) * 1e9)

    attributes = {
        "qalby.request_id": entry.request_id,
        "qalby.endpoint": entry.endpoint,
        "qalby.mode": entry.mode,
        "http.response.status_code": entry.status,
        "qalby.outcome": entry.outcome,
        "qalby.client_key": entry.client_key_prefix,
        **_served_by(entry),
        **{f"qalby.usage.{k}": v for k, v in entry.usage.items() if v is not None},
    }
    if settings.QALBY_LOG_CONTENT:
        attributes.update({"qalby.prompt": entry.prompt, "qalby.answer": entry.answer})
    span = _tracer.start_span(f"qalby {entry.endpoint}", start_time=wall_start, attributes=attributes)
    if entry.status >= 400 or entry.outcome == "error":
        span.set_status(Status(StatusCode.ERROR, entry.error[:500]))
    context = trace.set_span_in_context(span)
    for attempt in entry.attempts:
        child = _tracer.start_span(
            f"attempt {attempt.provider_uid}",
            context=context,
            start_time=at(attempt.started),
            attributes={
                "qalby.attempt": attempt.index,
                "qalby.provider": attempt.provider_uid,
                "qalby.model": attempt.model,
                "qalby.outcome": attempt.final_status,
                "qalby.retries": attempt.retries,
                **({"qalby.upstream_status": attempt.upstream_status} if attempt.upstream_status else {}),
                **({"qalby.error_type": attempt.error_type} if attempt.error_type else {}),
                **({"qalby.first_chunk_ms": attempt.first_chunk_ms} if attempt.first_chunk_ms is not None else {}),
            },
        )
        if attempt.error:
            child.set_status(Status(StatusCode.ERROR, attempt.error[:500]))
        end = attempt.started + (attempt.latency_ms or 0) / 1000
        child.end(end_time=at(end))
    span.end()
