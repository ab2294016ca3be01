"""Request logs, written off the request path.

When the answer, or the stream, ends, the middleware puts the finished :class:`Entry` on a queue
(:func:`submit`). A writer thread takes records in batches and writes them with bulk inserts. When
the database is briefly unavailable the writer keeps retrying with a bounded buffer; what it must
drop is counted (``dropped``, a metric and a log line), so loss is visible and never silent.
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

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, close_old_connections, models, transaction

from providers import fallback
from providers.requestlogs import metrics
from providers.requestlogs.entry import Entry

logger = logging.getLogger("qalby.logs")


def _rows(entry: Entry):
    from providers.requestlogs.models import Attempt, RequestLog

    served = fallback.served(entry.attempts)
    log = RequestLog(
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
    attempts = [
        Attempt(
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
    return _fitted(log), [_fitted(a) for a in attempts]


def _fitted(row: models.Model) -> models.Model:
    """``row`` with text the database accepts: valid UTF-8, no NUL characters, no longer than its column."""
    for column in row._meta.concrete_fields:
        value = getattr(row, column.attname)
        if isinstance(value, str):
            # A JSON escape can carry a lone surrogate, which no database encodes.
            value = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
            if column.max_length is not None:
                value = value[: column.max_length]
            setattr(row, column.attname, value)
    return row


_FLUSH = object()  # queued by flush(): stop gathering a batch and write what is there


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
            except (DataError, IntegrityError):
                # The database is up but refuses some record: retrying the batch would never end.
                with contextlib.suppress(DatabaseError):  # gone meanwhile: the rest waits, as below
                    self._write_each(len(batch))
                continue
            except DatabaseError as exc:  # the database is unavailable: keep the records, bounded
                logger.warning("request log write failed (%s); %d record(s) waiting", type(exc).__name__, len(self._buffer))
                with contextlib.suppress(Exception):
                    close_old_connections()
                self._absorb_queue()
                overflow = len(self._buffer) - settings.QALBY_LOG_BUFFER
                if overflow > 0:
                    del self._buffer[:overflow]
                    self._done(overflow, dropped=True)
                    logger.error("request log buffer full: dropped %d record(s) (%d dropped in all)", overflow, self.dropped)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                # A record we cannot turn into rows is a bug of ours: retrying will not help.
                logger.exception("request log batch of %d record(s) could not be written; dropped", len(batch))
                del self._buffer[: len(batch)]
                self._done(len(batch), dropped=True)
                continue
            del self._buffer[: len(batch)]
            self._done(len(batch))

    def _write_each(self, count: int) -> None:
        """Write the first ``count`` buffered records one by one; those the database refuses are dropped.

        Each leaves the buffer once settled, so nothing is written twice if the database goes away.
        """
        for _ in range(count):
            entry = self._buffer[0]
            try:
                self._write([entry])
            except (DataError, IntegrityError) as exc:
                del self._buffer[0]
                self._done(1, dropped=True)
                logger.error("request log %s refused by the database (%s); dropped", entry.request_id, exc)
            else:
                del self._buffer[0]
                self._done(1)

    def _absorb_queue(self) -> None:
        while True:
            try:
                self._buffer.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _write(self, batch: list[Entry]) -> None:
        from providers.requestlogs.models import Attempt, RequestLog

        pairs = [_rows(entry) for entry in batch]
        with transaction.atomic():
            logs = RequestLog.objects.bulk_create([log for log, _ in pairs])
            for log, (_, attempts) in zip(logs, pairs, strict=True):
                for attempt in attempts:
                    attempt.request_log_id = log.pk
            Attempt.objects.bulk_create([a for _, attempts in pairs for a in attempts])

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


@atexit.register
def _flush_at_exit() -> None:
    if writer._busy > 0:
        if not writer.flush(timeout=settings.QALBY_LOG_FLUSH_SECONDS):
            logger.error("request logs not written at shutdown: %d record(s) lost", writer._busy)
