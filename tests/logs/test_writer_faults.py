"""The log writer's rules for the failures between a batch and its rows, through the real writer and a
real database: a record that cannot become rows is dropped alone, visibly, and the writer goes on; a
connection lost in the middle of the record-by-record path keeps the records not yet settled, which
are written once, when the database answers again."""

import logging
import time

import pytest
from django.db import connection

from providers.fallback import AttemptRecord
from providers.models import Attempt, RequestLog
from providers.requestlogs import batching, metrics
from providers.requestlogs.entry import Entry

pytestmark = pytest.mark.django_db(transaction=True)


def entry(name) -> Entry:
    e = Entry(request_id=f"faults-{name}", endpoint="POST /agent/run")
    e.attempts = [AttemptRecord(0, "openai", "gpt", status="ok", latency_ms=12)]
    e.finish(200)
    return e


def unconvertible_usage(e: Entry) -> None:
    e.usage = {"input_tokens": {"prompt": 3}}  # a vendor's usage object where a count belongs


def unconvertible_attempt(e: Entry) -> None:
    # Its request log converts: the batch's log rows are inserted before its attempts fail to convert.
    e.attempts[0].latency_ms = {"total": 12}


@pytest.mark.parametrize("spoil", [unconvertible_usage, unconvertible_attempt])
def test_a_record_that_cannot_become_rows_is_dropped_alone_counted_and_logged_and_the_writer_goes_on(
        settings, caplog, spoil):
    settings.QALBY_LOG_BATCH_SECONDS = 0.5  # the three records land in one batch
    writer = batching.Writer()
    caplog.set_level(logging.ERROR, logger="qalby.logs")
    bad = entry("bad")
    spoil(bad)
    dropped_before = metrics.LOG_DROPPED._value.get()
    for e in [entry(0), bad, entry(1)]:
        writer.enqueue(e)
    # Not retried as if the database were down: the flush ends; the batch's good records are written.
    assert writer.flush(timeout=10)
    assert (writer.written, writer.dropped) == (2, 1)
    assert metrics.LOG_DROPPED._value.get() - dropped_before == 1
    (record,) = [r for r in caplog.records if "could not be turned into rows" in r.getMessage()]
    assert "request log faults-bad could not be turned into rows; dropped" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is TypeError  # the cause, for the bug report
    # One transaction a record: the dropped one left no request log without its attempts.
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["faults-0", "faults-1"]
    assert Attempt.objects.count() == 2
    # The writer thread survived it: the next record is written.
    writer.enqueue(entry(2))
    assert writer.flush(timeout=10) and writer.written == 3
    assert Attempt.objects.filter(request_log__request_id="faults-2").count() == 1


_LOSE = """
CREATE SEQUENCE qalby_test_losses;
CREATE FUNCTION qalby_test_lose_connection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A sequence, not a table: its count survives the rollback of the transaction it ends.
    IF {only} nextval('qalby_test_losses') <= {times} THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER qalby_test_lose_connection BEFORE INSERT ON providers_requestlog
    FOR EACH ROW EXECUTE FUNCTION qalby_test_lose_connection();
"""
_KEEP = """
DROP TRIGGER IF EXISTS qalby_test_lose_connection ON providers_requestlog;
DROP FUNCTION IF EXISTS qalby_test_lose_connection();
DROP SEQUENCE IF EXISTS qalby_test_losses;
"""


@pytest.fixture
def lose_connection():
    """``lose_connection(times, request_id=None)``: the writer's connection to PostgreSQL is terminated by
    the server itself (as a restart or an administrator does) each of the first ``times`` times it inserts
    a request log (only ``request_id``'s, if given). Returns how many inserts the fault has counted."""
    if connection.vendor != "postgresql":
        pytest.skip("a server connection to lose: PostgreSQL (DATABASE_URL)")

    def install(times: int, request_id: str | None = None):
        only = f"NEW.request_id = '{request_id}' AND" if request_id else ""
        with connection.cursor() as cursor:
            cursor.execute(_LOSE.format(only=only, times=times))
        return lambda: connection.cursor().execute("SELECT last_value FROM qalby_test_losses").fetchone()[0]

    yield install
    with connection.cursor() as cursor:
        cursor.execute(_KEEP)


def test_the_connection_lost_while_writing_record_by_record_keeps_the_rest_for_later(settings, caplog, lose_connection):
    losses = lose_connection(3, request_id="faults-lost")
    settings.QALBY_LOG_BATCH_SECONDS = 0.5  # the six records land in one batch
    writer = batching.Writer()
    caplog.set_level(logging.WARNING, logger="qalby.logs")
    refused = entry("refused")
    refused.status = -1  # breaks the column's check constraint: the batch goes record by record
    # The refused one first: the batch insert fails on it before reaching the record that loses the connection.
    for e in [entry(0), refused, entry(1), entry("lost"), entry(2), entry(3)]:
        writer.enqueue(e)
    assert writer.flush(timeout=30)
    # Settled before the loss: written once. After it: kept, then written once. Refused: dropped alone.
    logged = sorted(RequestLog.objects.values_list("request_id", flat=True))
    assert logged == ["faults-0", "faults-1", "faults-2", "faults-3", "faults-lost"]
    assert (writer.written, writer.dropped) == (5, 1)
    assert Attempt.objects.count() == 5
    assert losses() == 4  # lost three times, then written: the fault did happen
    messages = [r.getMessage() for r in caplog.records]
    assert any("faults-refused refused by the database" in m for m in messages), messages
    assert any("request log write failed (OperationalError)" in m for m in messages), messages


def test_a_flush_asked_for_during_an_outage_costs_no_record_when_the_database_is_back(settings, caplog, lose_connection):
    losses = lose_connection(5)  # the writer's first five inserts: about three seconds of retries
    # As at a shutdown during an outage: the flush's marker reaches the writer while it retries.
    settings.QALBY_LOG_BATCH_SECONDS = 0.2
    writer = batching.Writer()
    caplog.set_level(logging.WARNING, logger="qalby.logs")
    for n in range(3):
        writer.enqueue(entry(n))
    deadline = time.monotonic() + 30
    while losses() < 2 and time.monotonic() < deadline:  # the retries have begun
        time.sleep(0.02)
    assert writer.flush(timeout=30)
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [f"faults-{n}" for n in range(3)]
    assert (writer.written, writer.dropped) == (3, 0)
    assert not any("could not be turned into rows" in r.getMessage() for r in caplog.records)
    assert losses() >= 5  # the outage did last past the flush's marker
