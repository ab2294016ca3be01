"""Prometheus metrics, built from the same attempt records as the logs. Served at /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "qalby_requests_total", "API requests answered", ["endpoint", "status"], registry=REGISTRY
)
ATTEMPTS = Counter(
    "qalby_attempts_total", "Provider attempts by outcome", ["provider", "outcome"], registry=REGISTRY
)
FALLBACKS = Counter(
    "qalby_fallbacks_total", "Requests served by a later entry of their fallback chain", ["endpoint"], registry=REGISTRY
)
LATENCY = Histogram(
    "qalby_request_seconds", "Time to answer (to the end of the stream for streams)", ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=REGISTRY,
)
ATTEMPT_LATENCY = Histogram(
    "qalby_attempt_seconds", "Duration of provider attempts", ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=REGISTRY,
)
FIRST_CHUNK = Histogram(
    "qalby_first_chunk_seconds", "Streams: time to the first chunk or byte", ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=REGISTRY,
)
STREAMS_IN_FLIGHT = Gauge("qalby_streams_in_flight", "Streams being sent right now", registry=REGISTRY)
LOG_DROPPED = Counter(
    "qalby_log_records_dropped_total", "Request log records dropped because the database stayed unavailable",
    registry=REGISTRY,
)


def observe(entry) -> None:
    """Count one finished request (a providers.logs.Entry)."""
    REQUESTS.labels(entry.endpoint, str(entry.status)).inc()
    if entry.latency_ms is not None:
        LATENCY.labels(entry.endpoint).observe(entry.latency_ms / 1000)
    served = None
    for attempt in entry.attempts:
        outcome = attempt.status if attempt.status != "pending" else "cancelled"
        ATTEMPTS.labels(attempt.provider_uid, outcome).inc()
        if attempt.latency_ms is not None:
            ATTEMPT_LATENCY.labels(attempt.provider_uid).observe(attempt.latency_ms / 1000)
        if attempt.status == "ok":
            served = attempt
    if served is not None:
        if served.first_chunk_ms is not None:
            FIRST_CHUNK.labels(served.provider_uid).observe(served.first_chunk_ms / 1000)
        if served.index > 0:
            FALLBACKS.labels(entry.endpoint).inc()
