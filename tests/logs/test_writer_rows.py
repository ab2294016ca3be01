"""What the log writer stores: every column of a request log and of its attempts, and each attempt
under its own request log when many entries share a batch (the writer's own INSERTs, not bulk_create)."""

from datetime import UTC, datetime

import pytest

from providers.fallback import AttemptRecord
from providers.models import Attempt, RequestLog
from providers.requestlogs import batching
from providers.requestlogs.entry import Entry

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_column_is_stored_as_the_entry_says():
    e = Entry(request_id="cols-1", endpoint="POST /v1/chat/completions", client_key_name="backend",
              client_key_prefix="qk_1234", mode="sequential", route="chat", route_version=7,
              created_at=datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC))
    e.attempts = [  # out of order: stored by their index
        AttemptRecord(1, "anthropic", "claude", status="ok", latency_ms=900, first_chunk_ms=120, skipped_events=2),
        AttemptRecord(0, "openai", "gpt", status="error", error="rate limited (HTTP 429)", error_type="RateLimited",
                      upstream_status=429, retries=1, latency_ms=35),
    ]
    e.usage = {"input_tokens": 11, "output_tokens": 22, "characters": 33, "audio_bytes": 2**33, "audio_seconds": 1.5}
    e.error, e.prompt, e.answer = "late error", "the prompt", "the answer"
    e.finish(200)
    e.latency_ms = 1234
    writer = batching.Writer()
    writer.enqueue(e)
    assert writer.flush(timeout=10) and writer.written == 1
    log = RequestLog.objects.values().get(request_id="cols-1")
    assert log == {
        "id": log["id"], "request_id": "cols-1", "created_at": datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        "client_key_name": "backend", "client_key_prefix": "qk_1234", "endpoint": "POST /v1/chat/completions",
        "mode": "sequential", "status": 200, "outcome": "ok", "provider_uid": "anthropic", "model": "claude",
        "latency_ms": 1234, "first_chunk_ms": 120, "attempt_count": 2, "fallbacks": 1, "input_tokens": 11,
        "output_tokens": 22, "characters": 33, "audio_bytes": 2**33, "audio_seconds": 1.5, "route": "chat",
        "route_version": 7, "error": "late error", "prompt": "the prompt", "answer": "the answer",
    }
    attempts = list(Attempt.objects.filter(request_log_id=log["id"]).order_by("order").values())
    assert attempts == [
        {"id": attempts[0]["id"], "request_log_id": log["id"], "order": 0, "provider_uid": "openai", "model": "gpt",
         "outcome": "error", "upstream_status": 429, "error_type": "RateLimited", "error": "rate limited (HTTP 429)",
         "retries": 1, "latency_ms": 35, "first_chunk_ms": None, "skipped_events": 0},
        {"id": attempts[1]["id"], "request_log_id": log["id"], "order": 1, "provider_uid": "anthropic", "model": "claude",
         "outcome": "ok", "upstream_status": None, "error_type": "", "error": "", "retries": 0, "latency_ms": 900,
         "first_chunk_ms": 120, "skipped_events": 2},
    ]


def test_many_entries_in_one_batch_keep_their_own_attempts(settings):
    # More rows than one SQLite statement takes (999 parameters), so the ids come from several.
    settings.QALBY_LOG_BATCH_SIZE = 500
    settings.QALBY_LOG_BATCH_SECONDS = 1.0
    writer = batching.Writer()
    sizes = []
    real_write = writer._write
    writer._write = lambda batch: (sizes.append(len(batch)), real_write(batch))
    for n in range(150):
        e = Entry(request_id=f"rows-{n:03d}", endpoint="POST /agent/run")
        e.attempts = [AttemptRecord(i, f"p-{n}", f"m-{n}-{i}", status="error") for i in range(n % 4)]
        e.finish(200)
        writer.enqueue(e)
    assert writer.flush(timeout=10) and writer.written == 150
    assert max(sizes) >= 100  # one batch, or nearly
    stored = set(Attempt.objects.values_list("request_log__request_id", "order", "provider_uid", "model"))
    assert stored == {(f"rows-{n:03d}", i, f"p-{n}", f"m-{n}-{i}") for n in range(150) for i in range(n % 4)}
    counts = dict(RequestLog.objects.values_list("request_id", "attempt_count"))
    assert counts == {f"rows-{n:03d}": n % 4 for n in range(150)}
