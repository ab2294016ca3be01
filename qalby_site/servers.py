"""What the proxy needs from the ASGI servers it runs on, that ASGI cannot express.

uvicorn serves production and the tests (qalby_site/serve.py); daphne only ``manage.py runserver``
(channels). Both are pinned in requirements.lock; tests/audio/test_server_process.py checks what is
here against the real server, and tests/test_settings_and_server.py runs daphne too.

**Stopping.** :class:`Lifespan` answers the ASGI lifespan: at shutdown, after the server has let the
requests in flight end, it runs the apps' shutdown hooks (``QALBY_SHUTDOWN_HOOKS``) in a thread.

**Ending a broken stream.** A streamed HTTP/1.1 response of unknown length is chunked, and a
complete one ends with a zero-length chunk. When a stream breaks after its first bytes (a provider
dropped mid-audio), the response must end *without* that terminator: the client then sees a
truncated transfer (curl exits with 18, "transfer closed with outstanding read data remaining";
httpx raises RemoteProtocolError; a browser's fetch reader rejects) instead of a short file that
looks complete. ASGI cannot say this: a body message either continues the response or completes
it. Raising from the application is what uvicorn handles (it closes the connection, with an error
and a traceback in its log), but daphne 4.2 answers it by starting a 500 on the already started
response: that raises inside its application checker, which then stops for good, and the client
waits forever (verified; the same wait follows an application that returns without completing).
So the view marks the response (``providers.responses.abort_response``, which calls what this
module's :class:`AbortableResponses` wrapper put in the scope) and lets its body iterator end; the
wrapper, outermost, then closes the connection instead of sending the last body message. It needs
the server's own ``send`` to reach the connection: a bound method of uvicorn's request cycle, or
daphne's ``partial(server.handle_reply, protocol)``. Under another server it raises
``ResponseAborted``, leaving the server to end the connection.

**Uploads through daphne** (``runserver`` only; uvicorn needs none of this). Twisted, under daphne, parses every ``multipart/form-data`` POST body
into ``request.args`` with the email package, in memory, before daphne hands the body on; daphne
never reads those args. For a 25 MB audio upload that cost about 150 MB of memory and 3 s of CPU
(bench/bench_audio.py); :func:`tune_daphne` turns that parsing off, and Django parses the body
as it streams (spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE).

**Clients daphne would wait for.** Twisted stores a whole request body (to a temporary file)
before daphne hands it to the application, so the ASGI body limit came after the upload: a 30 MB
anonymous POST was stored whole before its 413. :func:`tune_daphne` refuses a body over its path's
limit as soon as its ``Content-Length`` is read (chunked bodies: as soon as the count passes it), and
gives a request's headers and then its body a deadline (``QALBY_HEADER_TIMEOUT``,
``QALBY_BODY_TIMEOUT``), since Twisted's only timeout is reset by every byte. Once daphne has
queued a body for the application, Twisted's copy is closed, so an upload is stored twice at most
while its request runs (Django's body and the parsed file), not three times.

**Sync bodies.** Under ASGI, Django serves a streaming response whose body is a plain iterator by
reading all of it into a list first (with a warning): a CSV export of every request log, built
from a database cursor, would sit whole in memory before its first byte left. :func:`async_body`
hands such a body over one piece at a time instead, each read in asgiref's thread-sensitive thread,
where the view that made the iterator (and its database connection) ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from functools import partialmethod
from typing import Any
from urllib.parse import unquote, urlsplit

from providers.responses import ABORT_KEY, ResponseAborted

logger = logging.getLogger("qalby")

_END = object()


def async_body(response: Any) -> Any:
    """Make a sync streaming body async, read piece by piece (see the module's docstring)."""
    if not getattr(response, "streaming", False) or response.is_async:
        return response
    from asgiref.sync import sync_to_async

    parts = iter(response.streaming_content)
    read = sync_to_async(next, thread_sensitive=True)

    async def pieces():
        while (part := await read(parts, _END)) is not _END:
            yield part

    response.streaming_content = pieces()
    return response


class _Abort:
    requested = False

    def request(self) -> None:
        self.requested = True


async def _drop_connection(send: Any) -> bool:
    """Close the client connection after what was sent so far; False when the server is unknown."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "is_closing"):  # uvicorn (asyncio transport)
        transport.close()  # flushes what is buffered, then FIN
        # uvicorn logs "returned without completing response" unless it saw the disconnect first.
        for _ in range(100):
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0.01)
        return True
    protocol = next(iter(getattr(send, "args", ())), None)
    channel = getattr(protocol, "channel", None)
    if channel is not None and getattr(channel, "transport", None) is not None:  # daphne (Twisted)
        channel.transport.loseConnection()  # also after flushing what is buffered
        return True
    return False


def _reply_and_close(transport: Any, status: bytes, detail: str) -> None:
    """Answer on the raw connection (no application has seen the request) and close it."""
    body = json.dumps({"detail": detail}).encode()
    transport.write(
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    transport.loseConnection()  # also stops reading: the rest of the body is never received


def _body_limit(request: Any) -> int:
    from qalby_site.middleware import BodyLimit

    path = unquote(urlsplit(request.channel._path.decode("latin-1")).path)
    return BodyLimit.limit_for(path, request.requestHeaders.getRawHeaders(b"authorization", [None])[0])


def _guard_bodies(request_class: Any) -> None:
    """Refuse a body over its limit while its headers are read, before Twisted stores it."""
    got_length, handle_chunk, received = (
        request_class.gotLength, request_class.handleContentChunk, request_class.requestReceived)

    def refuse(request: Any, limit: int) -> None:
        request._qalby_refused = True
        request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the refusal
        _reply_and_close(request.channel.transport, b"413 Content Too Large",
                         f"request body too large (limit {limit} bytes)")

    def gotLength(self, length):
        self._qalby_limit, self._qalby_received = _body_limit(self), 0
        if length is not None and length > self._qalby_limit:
            return refuse(self, self._qalby_limit)
        return got_length(self, length)

    def handleContentChunk(self, data):  # chunked bodies have no length up front: count
        if getattr(self, "_qalby_refused", False):
            return None
        self._qalby_received += len(data)
        if self._qalby_received > self._qalby_limit:
            return refuse(self, self._qalby_limit)
        return handle_chunk(self, data)

    def requestReceived(self, command, path, version):
        if not getattr(self, "_qalby_refused", False):
            received(self, command, path, version)

    request_class.gotLength, request_class.handleContentChunk = gotLength, handleContentChunk
    request_class.requestReceived = requestReceived


def _release_bodies(request_class: Any) -> None:
    """Close Twisted's stored copy of a body once daphne has handed it to the application.

    daphne queues the whole body for the application as soon as the request starts, then never
    reads its copy again, which Twisted would keep (a temporary file past 100 kB) until the
    response ends: for an audio upload, one copy too many for as long as the provider takes.
    """
    process = request_class.process

    def process_then_release(self):
        def release(result):
            content = getattr(self, "content", None)
            if content is not None and getattr(self, "application_queue", None) is not None:
                content.close()  # Twisted closes it again when the request ends: harmless
            return result

        return process(self).addBoth(release)

    request_class.process = process_then_release


def _guard_slow_clients(channel_class: Any) -> None:
    """Deadlines for a request's headers (from its first byte) and then its body.

    Twisted's own timeout is an idle timeout, reset by every byte: a client that sends one byte a
    minute holds its connection (and, for a body, a buffer) for as long as it likes.
    """
    from django.conf import settings

    data_received, headers_done, content_done, lost = (
        channel_class.dataReceived, channel_class.allHeadersReceived, channel_class.allContentReceived,
        channel_class.connectionLost)

    def arm(channel: Any, seconds: float, detail: str) -> None:
        disarm(channel)

        def expire():
            channel._qalby_deadline = None
            if channel.transport is not None and not channel.transport.disconnecting:
                _reply_and_close(channel.transport, b"408 Request Timeout", detail)

        channel._qalby_deadline = channel.callLater(seconds, expire)

    def disarm(channel: Any) -> None:
        deadline = getattr(channel, "_qalby_deadline", None)
        channel._qalby_deadline = None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def dataReceived(self, data):
        # The first byte of a request, not a connection's opening: an idle keep-alive connection
        # between requests is Twisted's idle timeout's business.
        if data and not self._handlingRequest and getattr(self, "_qalby_deadline", None) is None:
            arm(self, settings.QALBY_HEADER_TIMEOUT, "request headers not received in time")
        return data_received(self, data)

    def allHeadersReceived(self):
        headers_done(self)
        if not self.transport.disconnecting:
            arm(self, settings.QALBY_BODY_TIMEOUT, "request body not received in time")

    def allContentReceived(self):
        disarm(self)
        return content_done(self)

    def connectionLost(self, reason):
        disarm(self)
        return lost(self, reason)

    channel_class.dataReceived, channel_class.allHeadersReceived = dataReceived, allHeadersReceived
    channel_class.allContentReceived, channel_class.connectionLost = allContentReceived, connectionLost


def tune_daphne() -> None:
    """Make daphne (Twisted) safe and lean for the proxy (see above): no multipart parsing in
    memory, bodies over their limit refused before they are stored, deadlines for slow clients.

    Only when daphne serves: it installs its reactor before it imports the application."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        return
    from daphne.http_protocol import WebRequest
    from twisted.web.http import HTTPChannel
    if not getattr(WebRequest, "_qalby_tuned", False):
        WebRequest.__init__ = partialmethod(WebRequest.__init__, parsePOSTFormSubmission=False)
        _guard_bodies(WebRequest)
        _release_bodies(WebRequest)
        _guard_slow_clients(HTTPChannel)
        WebRequest._qalby_tuned = True


class AbortableResponses:
    """ASGI wrapper: a response marked by ``abort_response`` ends by closing the connection.

    The mark is the callable this puts in the scope under ``providers.responses.ABORT_KEY``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        control = _Abort()
        scope[ABORT_KEY] = control.request

        async def checked_send(message):
            if control.requested and message["type"] == "http.response.body" and not message.get("more_body"):
                if not await _drop_connection(send):
                    raise ResponseAborted("the stream broke after its first bytes")
                return
            await send(message)

        await self.app(scope, receive, checked_send)


class Lifespan:
    """ASGI wrapper: answers the lifespan scope; at shutdown runs ``hooks`` one after the other, in a
    thread (they may wait: the request logs' hook flushes to the database)."""

    def __init__(self, app: Any, hooks: list) -> None:
        self.app, self.hooks = app, hooks

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                if url := os.environ.get("QALBY_SERVE_URL"):  # set by qalby_site/serve.py
                    logger.info("Qalby Proxy ready on %s: API docs %s/docs, admin %s/admin/", url, url, url)
            elif message["type"] == "lifespan.shutdown":
                try:
                    await asyncio.to_thread(self._run_hooks)
                except Exception as exc:  # the process stops either way; say why its hooks failed
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    def _run_hooks(self) -> None:
        for hook in self.hooks:
            hook()
