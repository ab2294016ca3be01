"""The log writer when the database is unavailable: bounded buffer, retries, visible loss."""

import logging
import time

import pytest
from django.db import OperationalError

from providers.models import RequestLog
from providers.requestlogs import batching, metrics
from providers.requestlogs.entry import Entry

pytestmark = pytest.mark.django_db(transaction=True)


def entry(n: int) -> Entry:
    e = Entry(request_id=f"writer-{n}", endpoint="POST /agent/run")
    e.finish(200)
    return e


def test_records_wait_while_the_database_is_down_and_the_overflow_is_counted(settings, monkeypatch, caplog):
    settings.QALBY_LOG_BUFFER = 5
    settings.QALBY_LOG_BATCH_SECONDS = 0.05
    writer = batching.Writer()
    real_write = writer._write
    down_until = time.monotonic() + 0.6

    def flaky_write(batch):
        if time.monotonic() < down_until:
            raise OperationalError("could not connect to server")
        real_write(batch)

    monkeypatch.setattr(writer, "_write", flaky_write)
    dropped_before = metrics.LOG_DROPPED._value.get()
    caplog.set_level(logging.WARNING, logger="qalby.logs")
    for n in range(8):
        writer.enqueue(entry(n))
    assert writer.flush(timeout=10)
    assert writer.dropped == 3 and writer.written == 5
    assert metrics.LOG_DROPPED._value.get() - dropped_before == 3
    assert any("dropped 3 record(s)" in r.getMessage() for r in caplog.records)
    assert any("write failed (OperationalError)" in r.getMessage() for r in caplog.records)
    # The newest records are the ones kept.
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [f"writer-{n}" for n in range(3, 8)]


def test_a_burst_is_written_in_a_few_batches(settings, django_assert_max_num_queries):
    settings.QALBY_LOG_BATCH_SIZE = 100
    writer = batching.Writer()
    calls = []
    real_write = writer._write
    writer._write = lambda batch: (calls.append(len(batch)), real_write(batch))
    for n in range(250):
        writer.enqueue(entry(n))
    assert writer.flush(timeout=10)
    assert RequestLog.objects.count() == 250
    assert len(calls) <= 5 and max(calls) <= 100


def test_a_record_the_database_refuses_is_dropped_alone_and_the_rest_go_on(settings, caplog):
    settings.QALBY_LOG_BATCH_SECONDS = 0.2  # the six records land in one batch
    writer = batching.Writer()
    caplog.set_level(logging.ERROR, logger="qalby.logs")
    refused = entry(99)
    refused.status = -1  # breaks the column's check constraint on every database
    for e in [entry(0), entry(1), entry(2), refused, entry(3), entry(4)]:
        writer.enqueue(e)
    started = time.monotonic()
    assert writer.flush(timeout=10)
    assert time.monotonic() - started < 3  # not retried as if the database were down
    assert writer.dropped == 1 and writer.written == 5
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [f"writer-{n}" for n in range(5)]
    assert any("writer-99 refused by the database" in r.getMessage() for r in caplog.records)
    # The writer is not stuck on it: the next record goes in at once.
    writer.enqueue(entry(5))
    assert writer.flush(timeout=3) and RequestLog.objects.filter(request_id="writer-5").exists()


def test_text_from_clients_is_fitted_to_the_columns():
    # PostgreSQL refuses NUL characters in text and values longer than a column; clients choose these.
    writer = batching.Writer()
    e = entry(0)
    e.endpoint = "POST /agent/" + "x" * 500
    e.client_key_name = "mobile\x00app"
    e.error = "unknown model 'm\x00\x00'"
    writer.enqueue(e)
    assert writer.flush(timeout=10) and writer.dropped == 0
    log = RequestLog.objects.get(request_id="writer-0")
    assert log.endpoint == ("POST /agent/" + "x" * 500)[:100]
    assert log.client_key_name == "mobile\ufffdapp" and log.error == "unknown model 'm\ufffd\ufffd'"


def test_text_no_database_can_encode_is_replaced_not_lost():
    writer = batching.Writer()
    odd, plain = entry(0), entry(1)
    odd.error = "unknown model '\ud800'"  # a lone surrogate, as a JSON escape can carry one
    writer.enqueue(odd)
    writer.enqueue(plain)
    assert writer.flush(timeout=10) and writer.written == 2 and writer.dropped == 0
    assert RequestLog.objects.get(request_id="writer-0").error == "unknown model '?'"
