"""A graceful stop: before the server stops, the apps' shutdown hooks run (``QALBY_SHUTDOWN_HOOKS``).

daphne stops its Twisted reactor on SIGTERM. Before it does, it runs the reactor's "before
shutdown" triggers and waits for the Deferreds they return: ours runs the hooks, one after the
other, in a thread, so the reactor keeps serving the streams in flight meanwhile. The request logs'
hook waits until no logged request is in flight (at most QALBY_SHUTDOWN_GRACE_SECONDS), then writes
their logs. The site knows the hooks only by their dotted paths in settings.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.utils.module_loading import import_string


def install() -> None:
    """Under daphne, run the shutdown hooks before its reactor stops; asgi.py calls this once.

    daphne installs its reactor before it imports the application, so the reactor is known here;
    without one (another server), nothing is hooked.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor, threads

    hooks = [import_string(path) for path in settings.QALBY_SHUTDOWN_HOOKS]

    def run() -> None:
        for hook in hooks:
            hook()

    # deferToThread: the hooks may wait, and must not block the reactor, which keeps serving meanwhile.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: threads.deferToThread(run))
