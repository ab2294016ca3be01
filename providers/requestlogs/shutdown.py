"""The request logs' part of a graceful stop: wait for the logged requests in flight, then write their logs.

The middleware counts the requests it logs (:func:`started`, :func:`finished`). The site runs
:func:`drain` when the server is told to stop (``QALBY_SHUTDOWN_HOOKS``, see qalby_site/lifecycle.py),
in a thread, while the server keeps serving the streams still in flight.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from providers.requestlogs.batching import flush_at_exit

logger = logging.getLogger("qalby.lifecycle")

_in_flight = 0
_lock = threading.Lock()


def started() -> None:
    global _in_flight
    with _lock:
        _in_flight += 1


def finished() -> None:
    global _in_flight
    with _lock:
        _in_flight -= 1


def drain() -> None:
    """Wait until no logged request is in flight (at most QALBY_SHUTDOWN_GRACE_SECONDS), then flush the logs
    (at most QALBY_LOG_FLUSH_SECONDS, shared with the flush at interpreter exit)."""
    deadline = time.monotonic() + settings.QALBY_SHUTDOWN_GRACE_SECONDS
    if _in_flight:
        logger.info("stopping: waiting for %d request(s) in flight", _in_flight)
    while _in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if _in_flight > 0:
        logger.warning("stopping with %d request(s) still in flight after %ss", _in_flight,
                       settings.QALBY_SHUTDOWN_GRACE_SECONDS)
    flush_at_exit()
