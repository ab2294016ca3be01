"""The log writer when the database is unavailable: bounded buffer, retries, visible loss."""

import logging
import time

import pytest
from django.db import OperationalError

from providers import logs, metrics
from providers.models import RequestLog

pytestmark = pytest.mark.django_db(transaction=True)


def entry(n: int) -> logs.Entry:
    e = logs.Entry(request_id=f"writer-{n}", endpoint="POST /agent/run")
    e.finish(200)
    return e


def test_records_wait_while_the_database_is_down_and_the_overflow_is_counted(settings, monkeypatch, caplog):
    settings.QALBY_LOG_BUFFER = 5
    settings.QALBY_LOG_BATCH_SECONDS = 0.05
    writer = logs.Writer()
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
    writer = logs.Writer()
    calls = []
    real_write = writer._write
    writer._write = lambda batch: (calls.append(len(batch)), real_write(batch))
    for n in range(250):
        writer.enqueue(entry(n))
    assert writer.flush(timeout=10)
    assert RequestLog.objects.count() == 250
    assert len(calls) <= 5 and max(calls) <= 100
