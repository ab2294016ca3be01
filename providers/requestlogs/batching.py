"""Request logs, written off the request path.

When the answer, or the stream, ends, the middleware puts the finished :class:`Entry` on a queue
(:func:`submit`). A writer thread takes records in batches and writes them with bulk inserts of its
own (:class:`_Insert`): bulk_create's statements without its cost per row (bench/bench_logwriter.py).
When the database is briefly unavailable the writer keeps retrying with a bounded buffer; what it
must drop is counted (``dropped``, a metric and a log line), so loss is visible and never silent.
``flush()`` drains the queue; it runs at interpreter exit, and in the shutdown hook, so a graceful
shutdown loses nothing.

Values come from clients (a model name, an error quoting one), so rows are made to fit: text loses
NUL characters (PostgreSQL refuses them) and lone surrogates, and is clipped to its column. A batch
the database still refuses for its data is written record by record, and only the refused ones are
dropped: a record retried forever would hold up every record behind it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
from itertools import chain

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connections,
    models,
    transaction,
)

from providers import fallback
from providers.requestlogs import metrics
from providers.requestlogs.entry import Entry

logger = logging.getLogger("qalby.logs")


def _log_values(entry: Entry) -> dict:
    served = fallback.served(entry.attempts)
    return dict(
        request_id=entry.request_id,
        created_at=entry.created_at,
        client_key_name=entry.client_key_name,
        client_key_prefix=entry.client_key_prefix,
        endpoint=entry.endpoint,
        mode=entry.mode,
        status=entry.status,
        outcome=entry.outcome,
        provider_uid=served.provider_uid if served else "",
        model=served.model if served else "",
        latency_ms=entry.latency_ms,
        first_chunk_ms=entry.first_chunk_ms if entry.first_chunk_ms is not None else (served.first_chunk_ms if served else None),
        attempt_count=len(entry.attempts),
        fallbacks=served.index if served else 0,
        route=entry.route,
        route_version=entry.route_version,
        error=entry.error[:4000],
        prompt=entry.prompt,
        answer=entry.answer,
        **entry.usage,
    )


def _attempt_values(entry: Entry) -> list[dict]:
    return [
        dict(
            order=a.index,
            provider_uid=a.provider_uid,
            model=a.model,
            outcome=a.final_status,
            upstream_status=a.upstream_status,
            error_type=a.error_type or "",
            error=(a.error or "")[:4000],
            retries=a.retries,
            latency_ms=a.latency_ms,
            first_chunk_ms=a.first_chunk_ms,
            skipped_events=a.skipped_events,
        )
        for a in sorted(entry.attempts, key=lambda a: a.index)
    ]


def _fit(value: str, max_length: int | None) -> str:
    """``value`` as the database accepts it: valid UTF-8, no NUL characters, no longer than its column."""
    if not value.isascii():  # ASCII holds no surrogate, and isascii() reads a flag: most text skips this
        # A JSON escape can carry a lone surrogate, which no database encodes.
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd")[:max_length]


class _Insert:
    """The bulk INSERT of one model's rows, worked out once per database vendor (SQLite, PostgreSQL).

    It writes what ``bulk_create`` wrote: the same columns, each value fitted by :func:`_fit` and
    converted as its field's ``get_db_prep_save`` does, in statements of the same form. Without its
    cost per row: a model instance, and an SQL compilation that walks every field of every row.
    """

    def __init__(self, model: type[models.Model], connection, returning: bool) -> None:
        opts = model._meta
        qn = connection.ops.quote_name
        # All the columns but the id, which the database gives.
        self.fields = [f for f in opts.concrete_fields if not f.primary_key]
        self.names = {f.attname for f in self.fields}
        self.defaults = [(f, f.get_default()) for f in self.fields]  # constants (0, None): taken once
        self.returning = returning
        head = f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in self.fields)}) "
        tail = f" RETURNING {qn(opts.db_table)}.{qn(opts.pk.column)}" if returning else ""
        self.unnest = connection.vendor == "postgresql"
        if self.unnest:
            # As bulk_create on PostgreSQL does for several rows (for one, the same row either way): an
            # array per column, one statement text whatever the batch size; each typed without its
            # length, so that a value too long is refused, not cut.
            arrays = ", ".join(f"(%s)::{f.db_type(connection).split('(')[0]}[]" for f in self.fields)
            self.sql = f"{head}SELECT * FROM UNNEST({arrays}){tail}"
        else:
            self.head, self.tail = head + "VALUES ", tail
            self.placeholders = "(" + ", ".join(["%s"] * len(self.fields)) + ")"

    def insert(self, records: list[dict], connection) -> list[int]:
        """Insert ``records`` (values by attribute name; a missing one takes its field's default).

        With ``returning``, the ids the database gave them, in their order: bulk_create relies on
        RETURNING keeping the order of the rows on both databases, and so do we.
        """
        if not records:
            return []
        if unknown := set().union(*records) - self.names:
            raise TypeError(f"unexpected field(s) {sorted(unknown)}")  # as the model would have said
        # Column by column: what to do with a value is decided once a column, not once a value.
        columns = [_converted(f, [r.get(f.attname, default) for r in records], connection)
                   for f, default in self.defaults]
        ids = []
        # Not connection.cursor(): under DEBUG it logs each query, quoting every value, which cost 4%
        # of the server's CPU under load; the writer's inserts are not the queries DEBUG is for.
        connection.ensure_connection()
        with connection.wrap_database_errors:
            raw = connection.create_cursor()
        with connection.make_cursor(raw) as cursor:
            for sql, params in self._statements(columns, connection):
                cursor.execute(sql, params)
                if self.returning:
                    ids.extend(pk for pk, in cursor.fetchall())
        return ids

    def _statements(self, columns: list[list], connection):
        if self.unnest:
            yield self.sql, columns
            return
        # As bulk_create elsewhere: rows of placeholders, as many a statement as the backend takes.
        rows = list(zip(*columns, strict=True))
        size = connection.ops.bulk_batch_size(self.fields, rows)
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            yield self.head + ", ".join([self.placeholders] * len(part)) + self.tail, list(chain.from_iterable(part))


def _converted(field: models.Field, values: list, connection) -> list:
    """``values`` as bulk_create stored them: fitted (:func:`_fit`), then ``field.get_db_prep_save``.

    Where Django's code is plain, it is said here without a call a value: a str fitted is stored as
    it is in a text column, an integer field hands an int to the backend's ``adapt_integerfield_value``
    (psycopg's Int2, Int4... on PostgreSQL), and None is NULL.
    """

    def prepared(value):
        return field.get_db_prep_save(_fit(value, field.max_length) if isinstance(value, str) else value, connection)

    if isinstance(field, (models.CharField, models.TextField)):
        max_length = field.max_length
        return [_fit(v, max_length) if type(v) is str else v if v is None else prepared(v) for v in values]
    if isinstance(field, models.IntegerField) and not isinstance(field, models.AutoField):
        adapt, internal_type = connection.ops.adapt_integerfield_value, field.get_internal_type()
        return [adapt(v, internal_type) if type(v) is int else v if v is None else prepared(v) for v in values]
    return [prepared(v) for v in values]


_inserts: dict[str, tuple[_Insert, _Insert]] = {}


def _inserts_for(connection) -> tuple[_Insert, _Insert]:
    """The INSERTs of request logs (their ids wanted, for their attempts) and of attempts."""
    from providers.requestlogs.models import Attempt, RequestLog

    if connection.vendor not in _inserts:
        logs, attempts = _Insert(RequestLog, connection, returning=True), _Insert(Attempt, connection, returning=False)
        _inserts[connection.vendor] = logs, attempts
    return _inserts[connection.vendor]


_FLUSH = object()  # queued by flush(): stop gathering a batch and write what is there


def _unavailable(error: Exception) -> bool:
    """A database error that is not a refusal of the record itself: the database is down or gone."""
    return isinstance(error, DatabaseError) and not isinstance(error, DataError | IntegrityError)


class Writer:
    """A daemon thread that writes queued entries in batches."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Entry | object] = queue.Queue()
        self._buffer: list[Entry] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0

    def enqueue(self, entry: Entry) -> None:
        with self._lock:
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qalby-log-writer", daemon=True)
                self._thread.start()
        self._queue.put(entry)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                # Idle: drop a connection the database may time out; a failure here must not end the thread.
                with contextlib.suppress(Exception):
                    close_old_connections()
                continue
            if first is _FLUSH:
                continue
            self._buffer.append(first)
            # Gather what else is waiting, up to a batch, so a burst costs a few inserts, not one each.
            deadline = time.monotonic() + settings.QALBY_LOG_BATCH_SECONDS
            while len(self._buffer) < settings.QALBY_LOG_BATCH_SIZE and time.monotonic() < deadline:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _FLUSH:  # someone waits for the records: write them now
                    break
                self._buffer.append(item)
            self._write_buffer()

    def _write_buffer(self) -> None:
        backoff = 0.1
        while self._buffer:
            batch = self._buffer[: settings.QALBY_LOG_BATCH_SIZE]
            try:
                self._write(batch)
            except Exception as exc:
                if _unavailable(exc):
                    backoff = self._wait_for_database(exc, backoff)
                else:
                    # The database refuses some record, or one cannot become rows (a bug of ours): retrying
                    # the batch would never end, and it must not cost the other records. One by one, only those go.
                    with contextlib.suppress(DatabaseError):  # gone meanwhile: the rest waits
                        self._write_each(len(batch))
                continue
            del self._buffer[: len(batch)]
            self._done(len(batch))

    def _wait_for_database(self, error: Exception, backoff: float) -> float:
        """The database is unavailable: keep the records (bounded by QALBY_LOG_BUFFER), wait, and say how
        long to wait the next time."""
        logger.warning("request log write failed (%s); %d record(s) waiting", type(error).__name__, len(self._buffer))
        with contextlib.suppress(Exception):
            close_old_connections()
        self._absorb_queue()
        overflow = len(self._buffer) - settings.QALBY_LOG_BUFFER
        if overflow > 0:
            del self._buffer[:overflow]
            self._done(overflow, dropped=True)
            logger.error("request log buffer full: dropped %d record(s) (%d dropped in all)", overflow, self.dropped)
        time.sleep(backoff)
        return min(backoff * 2, 5.0)

    def _write_each(self, count: int) -> None:
        """Write the first ``count`` buffered records one by one; those the database refuses, or that
        cannot become rows, are dropped.

        Each leaves the buffer once settled, so nothing is written twice if the database goes away.
        """
        for _ in range(count):
            entry = self._buffer[0]
            try:
                self._write([entry])
            except Exception as exc:
                if _unavailable(exc):
                    raise  # this record and the rest wait for the database
                del self._buffer[0]
                self._done(1, dropped=True)
                if isinstance(exc, DatabaseError):
                    logger.error("request log %s refused by the database (%s); dropped", entry.request_id, exc)
                else:
                    logger.exception("request log %s could not be turned into rows; dropped", entry.request_id)
            else:
                del self._buffer[0]
                self._done(1)

    def _absorb_queue(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            # A flush's marker is no record: in a batch it would fail it whole, and count as one.
            if item is not _FLUSH:
                self._buffer.append(item)

    def _write(self, batch: list[Entry]) -> None:
        connection = connections[DEFAULT_DB_ALIAS]  # not django.db.connection, a proxy that costs a lookup a use
        logs, attempts = _inserts_for(connection)
        log_values = [_log_values(entry) for entry in batch]
        attempt_values = [_attempt_values(entry) for entry in batch]
        with transaction.atomic():
            ids = logs.insert(log_values, connection)
            for log_id, values in zip(ids, attempt_values, strict=True):
                for attempt in values:
                    attempt["request_log_id"] = log_id
            attempts.insert([attempt for values in attempt_values for attempt in values], connection)

    def _done(self, count: int, dropped: bool = False) -> None:
        with self._lock:
            self._busy -= count
            if dropped:
                self.dropped += count
                metrics.LOG_DROPPED.inc(count)
            else:
                self.written += count
            if self._busy <= 0:
                self._idle.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every queued entry is written (or dropped); False if that took too long."""
        self._queue.put(_FLUSH)
        with self._lock:
            return self._idle.wait_for(lambda: self._busy <= 0, timeout=timeout)


writer = Writer()


def submit(entry: Entry) -> None:
    if settings.QALBY_REQUEST_LOGS:
        writer.enqueue(entry)


_exit_deadline: float | None = None
_loss_said = False


@atexit.register
def flush_at_exit() -> None:
    """Write what is queued before the process exits; say what could not be, once.

    The shutdown hook calls it, then the interpreter's exit: both share one QALBY_LOG_FLUSH_SECONDS,
    from the first call. The chart's terminationGracePeriodSeconds counts the flush once: a stop
    that waited twice on a stuck database would be killed before saying what it lost.
    """
    global _exit_deadline, _loss_said
    if _exit_deadline is None:
        _exit_deadline = time.monotonic() + settings.QALBY_LOG_FLUSH_SECONDS
    if writer._busy > 0 and not writer.flush(timeout=max(0.0, _exit_deadline - time.monotonic())):
        if not _loss_said:
            _loss_said = True
            logger.error("request logs not written at shutdown: %d record(s) lost", writer._busy)
