"""The database as the request path sees it: up, or down since a given moment.

Provider configs, client keys and routes are cached per process. When a read that would refresh one
fails because the database cannot be reached, the cache answers with what it last read, as long as
that read is younger than QALBY_STALE_SECONDS (15 minutes by default): a database blip must not cost
a request a cached value can serve. What was never read (a key first used during the outage), and
every write, is a 503 with Retry-After instead.

While the database is down it is tried again at most once every RETRY_SECONDS per process: in
between, database work fails at once (:func:`down`), so a request neither queues behind connection
attempts nor waits for a connect timeout. The outage is logged twice, when it begins and when it
ends, never once per request, and shown in ``qalby_database_available`` and
``qalby_stale_reads_total``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from redis.exceptions import RedisError

from providers.exceptions import DatabaseUnavailable
from providers.requestlogs import metrics

logger = logging.getLogger("qalby.database")

# The errors that mean "cannot reach the database" (a refused or dropped connection, a server shutting
# down): not a constraint or a query the database rejected, which are bugs or bad input.
UNREACHABLE = (OperationalError, InterfaceError)
RETRY_SECONDS = 1.0


class _State:
    since: float | None = None  # monotonic time the outage began; None while the database answers
    began_at: datetime | None = None
    last_failure: float = 0.0
    stale_reads: int = 0


state = _State()


def failed(error: BaseException) -> None:
    """A unit of database work could not reach the database."""
    now = time.monotonic()
    state.last_failure = now
    if state.since is None:
        state.since, state.began_at, state.stale_reads = now, datetime.now(UTC), 0
        metrics.DATABASE_AVAILABLE.set(0)
        logger.warning("database unavailable (%s): serving provider configs, client keys and routes from this "
                       "process's cache for up to %g s; writes and management answer 503 until it is back",
                       type(error).__name__, settings.QALBY_STALE_SECONDS)


def answered() -> None:
    """A unit of database work succeeded: an outage, if there was one, has ended. Called in the thread
    that holds the connection, which is how the outage's record is written at once."""
    if state.since is None:
        return
    lasted, stale, began_at = time.monotonic() - state.since, state.stale_reads, state.began_at
    state.since = state.began_at = None
    metrics.DATABASE_AVAILABLE.set(1)
    logger.warning("database available again after %.1f s; %d reads were served from the cache meanwhile",
                   lasted, stale)
    from providers.requestlogs.models import DatabaseOutage

    try:  # what operators read in the admin's overview
        DatabaseOutage.objects.create(replica=socket.gethostname()[:255], began_at=began_at,
                                      ended_at=began_at + timedelta(seconds=lasted), stale_reads=stale)
    except DatabaseError as error:
        logger.warning("could not record the database outage (%s)", type(error).__name__)


def down() -> bool:
    """The database failed less than RETRY_SECONDS ago: do not wait for it now."""
    return state.since is not None and time.monotonic() - state.last_failure < RETRY_SECONDS


def outage_seconds() -> float | None:
    return None if state.since is None else time.monotonic() - state.since


def stands_in(read_at: float | None, what: str) -> bool:
    """Whether a cached value read at ``read_at`` (monotonic; None: nothing cached) may answer instead
    of the database; counted as a stale read when it does (``what``: its kind)."""
    if read_at is None or time.monotonic() - read_at >= settings.QALBY_STALE_SECONDS:
        return False
    state.stale_reads += 1
    metrics.STALE_READS.labels(what).inc()
    return True


_caches: list[Callable[[], int]] = []


def cache(size: Callable[[], int]) -> None:
    """Register a cache that can stand in for the database (``size``: how many entries it holds)."""
    _caches.append(size)


def cached_anything() -> bool:
    """Whether this process holds anything it could serve while the database is down."""
    return any(size() for size in _caches)


def unavailable(detail: str | None = None) -> DatabaseUnavailable:
    return DatabaseUnavailable(detail or "the database is unavailable; retry in a few seconds",
                               retry_after=max(RETRY_SECONDS, 5.0))


# What an outermost handler answers with 503 rather than 500: the database or Redis out of reach.
INFRASTRUCTURE = (*UNREACHABLE, RedisError)


def as_unavailable(error: BaseException) -> DatabaseUnavailable:
    """The 503 for an INFRASTRUCTURE error that reached a handler; a database one marks the outage
    (logged once), a Redis one does not (Redis is optional state, and its users fall back)."""
    if isinstance(error, RedisError):
        return unavailable("the shared state (Redis) is unavailable; retry in a few seconds")
    failed(error)
    return unavailable()
