"""A graceful stop: finish the requests in flight (streams included), write their logs, then exit.

daphne stops its Twisted reactor on SIGTERM. Before it does, it runs the reactor's "before
shutdown" triggers and waits for the Deferreds they return: ours waits until no request is in
flight (at most QALBY_SHUTDOWN_GRACE_SECONDS), then flushes the request logs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from django.conf import settings

logger = logging.getLogger("qalby.lifecycle")

_in_flight = 0
_lock = threading.Lock()
_registered = False


def started() -> None:
    global _in_flight
    with _lock:
        _in_flight += 1
    _register_once()


def finished() -> None:
    global _in_flight
    with _lock:
        _in_flight -= 1


def in_flight() -> int:
    return _in_flight


def _register_once() -> None:
    """Under daphne, hook the reactor's shutdown (imported lazily: daphne installs the reactor first)."""
    global _registered
    if _registered or "twisted.internet.reactor" not in sys.modules:
        return
    _registered = True
    from twisted.internet import reactor, threads

    def drain() -> None:
        deadline = time.monotonic() + settings.QALBY_SHUTDOWN_GRACE_SECONDS
        if _in_flight:
            logger.info("stopping: waiting for %d request(s) in flight", _in_flight)
        while _in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if _in_flight > 0:
            logger.warning("stopping with %d request(s) still in flight after %ss", _in_flight,
                           settings.QALBY_SHUTDOWN_GRACE_SECONDS)
        from providers.logs import writer

        writer.flush(timeout=settings.QALBY_LOG_FLUSH_SECONDS)

    # deferToThread: the wait must not block the reactor, which keeps serving the streams meanwhile.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: threads.deferToThread(drain))
