"""The server: ``python -m qalby_site.serve [--host H] [--port P] [--workers N]``.

uvicorn with uvloop and httptools, chosen by measurement against daphne and granian
(bench/README.md: most throughput per core, and no daphne tail at concurrency 1). ``make run``, the
image's entry point and the chart all start it through here, so every one of them gets the same
guards:

- :class:`GuardedHttpTools` gives a request's headers and then its body a deadline
  (``QALBY_HEADER_TIMEOUT``, ``QALBY_BODY_TIMEOUT``: 408, then the connection is closed) and caps its
  request line and headers (``MAX_HEADER_BYTES``: 431). uvicorn has an idle timeout between
  requests only, so a client sending a byte at a time could hold a connection for ever.
- no proxy headers: ``X-Forwarded-For``/``-Proto`` never change the client's address or scheme (the
  scheme is believed only through ``QALBY_BEHIND_TLS``, in settings); no ``Server`` header.
- the ASGI lifespan runs the apps' shutdown hooks (``QALBY_SHUTDOWN_HOOKS``) after the requests in
  flight have ended or ``QALBY_SHUTDOWN_GRACE_SECONDS`` passed: their request logs are written.
- ``--workers`` / ``QALBY_WORKERS``: processes sharing the socket (``auto``: one per CPU this container
  may use). Each has its own caches; with several, set ``REDIS_URL`` so that a change made through one
  reaches the others at once (otherwise within ``QALBY_CONFIG_TTL``).

Bodies need no server help: uvicorn stops reading a body the application has not asked for past
64 KiB, and the ASGI ``BodyLimit`` refuses an oversized one by its ``Content-Length`` before asking.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
LINGER_BYTES, LINGER_SECONDS = 4 * 1024 * 1024, 2.0

_REASONS = {408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large"}


class _LingeringClose:
    """The connection as a request's cycle sees it: uvicorn closes it after an answer with
    ``connection: close``; while that request's body is still arriving, it lingers first."""

    def __init__(self, protocol: GuardedHttpTools, cycle) -> None:
        self._protocol, self._cycle = protocol, cycle

    def __getattr__(self, name):
        return getattr(self._protocol.transport, name)

    def close(self) -> None:
        if self._cycle.more_body:
            self._protocol._linger()
        else:
            self._protocol.transport.close()


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for a request's headers and body, and a header cap."""

    _deadline = None
    _header_bytes = 0
    _linger_left: int | None = None  # bytes still dropped after an early answer

    def _arm(self, seconds: float, detail: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._refuse, 408, detail)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int, detail: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # Once the application has begun its answer, there is nothing left to say: just close.
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = b'{"detail": "' + detail.encode() + b'"}'
            self.transport.write(
                b"HTTP/1.1 " + _REASONS[status] + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        if status == 431:
            self._linger()  # the client is still sending its headers
        else:
            self.transport.close()  # the application, if it runs, sees a disconnect

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        # From a request's first byte: an idle keep-alive connection is uvicorn's own timeout's business.
        self._arm(settings.QALBY_HEADER_TIMEOUT, "request headers not received in time")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse(431, f"request line and headers over {MAX_HEADER_BYTES} bytes")

    def on_headers_complete(self) -> None:
        if self.transport.is_closing() or self._linger_left is not None:
            return
        super().on_headers_complete()
        self.cycle.transport = _LingeringClose(self, self.cycle)
        self._arm(settings.QALBY_BODY_TIMEOUT, "request body not received in time")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.more_body:
            self._linger()

    def _linger(self) -> None:
        """Close after an answer that came before the request's body had all arrived (a 413, a 431).

        Closing at once would reset the connection under a client still sending, which then never
        reads the answer; uvicorn's own way, reading the whole rest to drop it, has no bound. So, as
        nginx's lingering close: our end of the stream is closed after the answer, and what the client
        still sends is dropped, up to LINGER_BYTES or LINGER_SECONDS; then the connection is closed.
        """
        if self._linger_left is not None or self.transport.is_closing():
            return
        self._disarm()
        self._linger_left = LINGER_BYTES
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._linger_left is None:
            return super().data_received(data)
        self._linger_left -= len(data)
        if self._linger_left < 0:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def workers_from(value: str) -> int:
    """``auto``: one per CPU the process may run on, within the container's CPU quota (cgroup v2)."""
    if value != "auto":
        count = int(value)
        if count < 1:
            raise ValueError("workers must be at least 1, or auto")
        return count
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qalby_site.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", default=os.environ.get("QALBY_WORKERS", "1"),
                        help="worker processes, or auto: one per CPU (default: QALBY_WORKERS or 1)")
    args = parser.parse_args(argv)
    try:
        workers = workers_from(args.workers)
    except ValueError:
        parser.error(f"--workers: expected a number of at least 1 or auto, got {args.workers!r}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qalby_site.settings")
    metrics_dir = None
    if workers > 1:
        # Before anything imports prometheus_client: each worker then keeps its metrics in files there,
        # and /metrics sums them (providers/requestlogs/metrics.py).
        metrics_dir = tempfile.mkdtemp(prefix="qalby-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    import django

    django.setup(set_prefix=False)  # settings and logging before the first worker imports the application
    # uvicorn re-raises the SIGTERM it stopped on; a stop asked for and done cleanly exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(args.host, args.host)
    os.environ["QALBY_SERVE_URL"] = f"http://{shown}:{args.port}"  # for the ready line (servers.Lifespan)
    try:
        _run(args.host, args.port, workers)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "qalby_site.asgi:application",
        host=host, port=port, workers=workers,
        loop="uvloop", http=GuardedHttpTools, ws="none", lifespan="on", interface="asgi3",
        proxy_headers=False, server_header=False,
        timeout_keep_alive=settings.QALBY_KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=math.ceil(settings.QALBY_SHUTDOWN_GRACE_SECONDS),
        log_config=None,  # Django's LOGGING (plain or JSON lines, with request ids) stays in charge
        access_log=False,  # the request log records every API request; a line per request costs CPU
    )


if __name__ == "__main__":
    sys.exit(main())
