"""Prometheus metrics, built from the same attempt records as the logs. Served at /metrics.

Every label value comes from a fixed set, never from what a client sent: a series lives until the
process ends, so a client able to name new ones could grow every scrape without bound. Endpoints
are route patterns (``unmatched`` when none matched), providers are configured uids, statuses are
the server's own.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from providers import fallback

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
STREAMS_IN_FLIGHT = Gauge("qalby_streams_in_flight", "Streams being sent right now", registry=REGISTRY,
                          multiprocess_mode="livesum")
UNAUTHENTICATED = Counter(
    "qalby_unauthenticated_requests_total", "API calls refused without a valid client key (not in the request logs)",
    ["status"], registry=REGISTRY,
)
BREAKER_OPENS = Counter(
    "qalby_breaker_opens_total", "Circuit breakers this process opened (or opened again after a failed probe)",
    ["provider"], registry=REGISTRY,
)
BREAKER_SKIPS = Counter(
    "qalby_breaker_skips_total", "Chain entries skipped because their circuit breaker was open", ["provider"],
    registry=REGISTRY,
)
DATABASE_AVAILABLE = Gauge(
    "qalby_database_available", "0 while this process cannot reach its database (it serves from its caches)",
    registry=REGISTRY, multiprocess_mode="livemin",
)
DATABASE_AVAILABLE.set(1)
STALE_READS = Counter(
    "qalby_stale_reads_total", "Cached reads served past their lifetime because the database was unavailable",
    ["what"], registry=REGISTRY,
)
LOG_DROPPED = Counter(
    "qalby_log_records_dropped_total", "Request log records dropped because the database stayed unavailable",
    registry=REGISTRY,
)


def registry() -> CollectorRegistry:
    """What /metrics serves: this process's metrics or, when the server runs several worker processes
    (qalby_site/serve.py sets PROMETHEUS_MULTIPROC_DIR for them), all of theirs, summed: a scrape
    reaches one worker, and must not see only its share."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


def process_ended() -> None:
    """A shutdown hook: a stopped worker's streams in flight no longer count."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


_labelled: set[str] = set()  # provider uids that have series already


def _provider(uid: str) -> str:
    """``uid`` when it names a configured provider, else ``unknown``.

    The engine only makes attempts for uids the adapter cache found a config for (an unknown uid is
    a 404 before anything runs); this keeps the series bounded should that ever change. A uid keeps
    its label once it has series, so a config saved during a request does not count it as unknown.
    """
    from providers.adapter_cache import adapters

    if uid in _labelled:
        return uid
    if adapters.cached(uid) is not None:
        _labelled.add(uid)
        return uid
    return "unknown"


def observe(entry) -> None:
    """Count one finished request (a requestlogs Entry)."""
    REQUESTS.labels(entry.endpoint, str(entry.status)).inc()
    if entry.latency_ms is not None:
        LATENCY.labels(entry.endpoint).observe(entry.latency_ms / 1000)
    for attempt in entry.attempts:
        ATTEMPTS.labels(_provider(attempt.provider_uid), attempt.final_status).inc()
        if attempt.final_status == "skipped":
            BREAKER_SKIPS.labels(_provider(attempt.provider_uid)).inc()
        if attempt.latency_ms is not None:
            ATTEMPT_LATENCY.labels(_provider(attempt.provider_uid)).observe(attempt.latency_ms / 1000)
    # The same attempt the request log names as the one that served (a stream that broke included).
    served = fallback.served(entry.attempts)
    if served is not None:
        if served.first_chunk_ms is not None:
            FIRST_CHUNK.labels(_provider(served.provider_uid)).observe(served.first_chunk_ms / 1000)
        if served.index > 0:
            FALLBACKS.labels(entry.endpoint).inc()


def refused(status: int) -> None:
    """Count one API call answered without a valid client key; it leaves no request log."""
    UNAUTHENTICATED.labels(str(status)).inc()
