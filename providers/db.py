"""Database work from async code: one unit at a time in asgiref's database thread, with Django's
connection hygiene around it.

Django closes obsolete or broken connections in its ``request_started``/``request_finished``
receivers. The API's handler (``qalby_site/handlers.py``) runs those receivers inline in the event
loop's thread, where no connection lives, because hopping to a thread for them cost a thread per
request. The API touches the database only off its hot path (cache misses and refreshes, the manage
endpoints, readiness), and all of that goes through :func:`run`: the hygiene runs in the thread
that holds the connection, before and after each unit of work, so a connection that broke (a
database restart) or outlived ``DB_CONN_MAX_AGE`` is never reused.

A unit that cannot reach the database raises :class:`~providers.exceptions.DatabaseUnavailable`
(a 503) and marks the outage; while it lasts, units fail at once between retries (providers/outage.py).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from providers import outage

P = ParamSpec("P")
T = TypeVar("T")


def _hygienic(fn, args, kwargs):
    if outage.down():
        raise outage.unavailable()
    try:
        close_old_connections()
        result = fn(*args, **kwargs)
    except outage.UNREACHABLE as error:
        outage.failed(error)
        raise outage.unavailable() from error
    finally:
        try:
            close_old_connections()
        except outage.UNREACHABLE:
            pass  # closing a connection to a database that went away: it is gone either way
    outage.answered()
    return result


_in_db_thread = sync_to_async(_hygienic, thread_sensitive=True)


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the database thread; its ORM calls are plain sync ones."""
    return await _in_db_thread(fn, args, kwargs)


def unit(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """The async form of a sync function that uses the database (``aname = db.unit(name)``)."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return await _in_db_thread(fn, args, kwargs)

    return call
