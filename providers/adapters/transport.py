"""The SDKs' HTTP over aiohttp: a transport for their own ``httpx`` or ``httpx2`` client.

Why: under load, httpcore's connection pool costs more CPU than the rest of a request (every request
walks every pooled connection); aiohttp's connector does not. The SDKs keep their client class, its
event hooks (providers/adapters/sse.py), redirects, cookies and content decoding; only the wire
underneath changes. Build clients with :func:`client`.

What a transport promises (tests/contract/test_transport.py, through the SDKs, and test_transport_wire.py
check each):

- **Errors are httpx's own**, the class httpx's transport raises for the same fault, so what the
  adapters report (errors.transport_error) does not depend on the wire, and nothing that is not a
  timeout becomes one:

  ====================================================  ===========================
  aiohttp                                                httpx / httpx2
  ====================================================  ===========================
  ConnectionTimeoutError (``connect`` timeout)            ConnectTimeout
  SocketTimeoutError, ServerTimeoutError (``read``)       ReadTimeout
  ClientConnectorError (refused, DNS, TLS, proxy)         ConnectError
  ServerFingerprintMismatch                               ConnectError
  ClientPayloadError, after the peer reset the socket     ReadError
  ClientPayloadError, after a clean close (truncated
  or badly framed body)                                   RemoteProtocolError
  ServerDisconnectedError (closed before answering)       RemoteProtocolError
  ClientResponseError (malformed status line, headers,
  chunk framing)                                          RemoteProtocolError
  ClientConnectionResetError (writing to a closed
  connection)                                             WriteError
  ClientOSError (reset, and other socket errors)          ReadError
  NonHttpUrlClientError, InvalidURL                       UnsupportedProtocol
  any other ClientError                                   ReadError
  ValueError (a header with a control character)          LocalProtocolError
  ====================================================  ===========================

- **No connection cap**: a request never waits for a pool slot (the SDKs' own clients capped them at
  100 or 1000). Idle connections are kept 5 s, httpx's keep-alive.
- **One aiohttp session per event loop**, made in that loop on its first request; a closed loop's is
  dropped, a collected transport closes its sessions (no "Unclosed client session" later).
- **Nothing from the environment**: no proxy variables and no netrc (``trust_env`` is off, in aiohttp
  and in the client :func:`client` builds): a provider key goes only where its base URL says.
  Certificates are verified against the httpx library's default context, as before.
- **Bytes as they came**: a request body httpx holds as bytes (JSON) is sent as such, an upload
  (multipart) as httpx reads it, never held whole; response bodies are handed over as raw chunks as
  they arrive (content-encoding is left to httpx, which decodes it for the SDK, as with
  its own transport), with at most ``READ_BUFFER`` read ahead per response.
- **A connection is never left half-read**: a body read to its end returns its connection to the
  pool; one closed early, cancelled or broken closes it; a request cancelled before its answer closes
  its connection too. Requests are not retried (aiohttp would retry an idempotent one once): retries
  are the engine's.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import httpx2
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept, as httpx does
READ_BUFFER = 64 * 1024  # bytes read ahead per response before aiohttp stops reading its socket
HEADER_LIMIT = 100 * 1024  # the longest response header line aiohttp accepts (httpcore takes 100 KiB of headers)
MAX_HEADERS = 1000
# httpx sets these itself (or leaves them out on purpose): aiohttp must not add its own.
_NOT_AUTOMATIC = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_VERSIONS = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}


def _error(error: Exception, lib: Any, response: aiohttp.ClientResponse | None = None) -> Exception:
    """The httpx (``lib``) error for an aiohttp one; the table in the module's docstring."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        kind = lib.ConnectTimeout
    elif isinstance(error, aiohttp.ServerTimeoutError):
        kind = lib.ReadTimeout
    elif isinstance(error, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        kind = lib.ConnectError
    elif isinstance(error, aiohttp.ClientPayloadError):
        kind = lib.ReadError if _reset(response) else lib.RemoteProtocolError
    elif isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError | HttpProcessingError):
        kind = lib.RemoteProtocolError
    elif isinstance(error, aiohttp.ClientConnectionResetError):
        kind = lib.WriteError
    elif isinstance(error, aiohttp.NonHttpUrlClientError | aiohttp.InvalidURL):
        kind = lib.UnsupportedProtocol
    else:
        kind = lib.ReadError
    return kind(str(error) or type(error).__name__)


def _reset(response: aiohttp.ClientResponse | None) -> bool:
    """Whether the body broke because the socket failed (a reset), rather than the peer closing it."""
    connection = response.connection if response is not None else None
    protocol = connection.protocol if connection is not None else None
    return protocol is not None and isinstance(protocol.exception(), OSError)


class _Body:
    """A response body, chunk by chunk as aiohttp reads it. An iterator object, not a generator: an
    abandoned body leaves nothing to finalize; its aiohttp response releases the connection."""

    _lib: Any

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except (aiohttp.ClientError, HttpProcessingError) as error:  # the second from aiohttp's Python parser
            mapped = _error(error, self._lib, self._response)
            self._response.close()
            raise mapped from error
        except BaseException:  # cancelled mid-body: the rest of it would be read by nobody
            self._response.close()
            raise
        if chunk:
            return chunk
        raise StopAsyncIteration

    async def aclose(self) -> None:
        # Read to its end, the body already gave its connection back to the pool; else it closes it.
        self._response.close()


class _HttpxBody(_Body, httpx.AsyncByteStream):
    _lib = httpx


class _Httpx2Body(_Body, httpx2.AsyncByteStream):
    _lib = httpx2


class _Watch:
    """Wakes the reader of a body whose connection is gone without its reader being told.

    aiohttp's C parser drops a body whose framing turns bad after its first bytes (a malformed chunk
    size) without failing its reader, which would then wait forever, and its read timeout is dropped
    too: httpx raises RemoteProtocolError. One per connection, called when it closes.
    """

    __slots__ = ("response",)

    def __init__(self) -> None:
        # The response being read on this connection, weakly: it holds the connection, which holds this.
        self.response: weakref.ref[aiohttp.ClientResponse] | None = None

    def __call__(self, closed: asyncio.Future) -> None:
        if not closed.cancelled():
            closed.exception()  # retrieved, or asyncio logs it when the future is collected
        response = self.response() if self.response is not None else None
        content = response.content if response is not None else None
        if content is not None and not content.is_eof() and content.exception() is None:
            content.set_exception(aiohttp.ServerDisconnectedError("the connection closed in the middle of the body"))


_ssl_contexts: dict[Any, Any] = {}


def _ssl_context(lib: Any) -> Any:
    """The certificate checks httpx's own transport makes (one context per library, shared)."""
    if lib not in _ssl_contexts:
        _ssl_contexts[lib] = lib.create_ssl_context()
    return _ssl_contexts[lib]


def _close_now(session: aiohttp.ClientSession) -> None:
    """Close a session's connections at once, on its loop's thread or once that loop is closed.

    The first step of ``session.close()`` closes every connection; the rest only waits for their
    sockets to be gone, which needs no one to wait for it (nor can, on a closed loop).
    """
    closing = session.close()
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()


def _discard(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close a session without awaiting it, from any thread."""
    if loop.is_closed():
        _close_now(session)  # marks it closed (no warning when collected); its sockets go with it
    elif loop.is_running():
        loop.call_soon_threadsafe(_close_now, session)


def _discard_all(sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession]) -> None:
    for loop, session in list(sessions.items()):
        sessions.pop(loop, None)
        _discard(loop, session)


async def _sent(stream: Any) -> AsyncIterator[bytes]:
    # Our own async iterator: aiohttp takes any AsyncIterable, and httpx's streams are sync ones too.
    async for chunk in stream:
        yield chunk


class _Transport:
    """The part of a transport that is the same for httpx and httpx2."""

    _lib: Any
    _body: type[_Body]

    def __init__(self, *, limit: int = 0, keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        self._limit = limit  # 0: no cap
        self._keepalive_expiry = keepalive_expiry
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._watches: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()
        weakref.finalize(self, _discard_all, self._sessions)

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._open(loop)
        return session

    def _open(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        for other, old in list(self._sessions.items()):
            if other.is_closed():
                self._sessions.pop(other, None)
                _discard(other, old)
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=self._keepalive_expiry,
            ssl=_ssl_context(self._lib),
        )
        session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False, trust_env=False,
            skip_auto_headers=_NOT_AUTOMATIC, read_bufsize=READ_BUFFER,
            max_line_size=HEADER_LIMIT, max_field_size=HEADER_LIMIT, max_headers=MAX_HEADERS,
        )
        # aiohttp retries an idempotent request once on a broken connection; httpx does not, and the
        # engine owns retries. (A private switch; aiohttp's own test client turns it off the same way.)
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._sessions[loop] = session
        return session

    def _timeout(self, timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
        # No total and no pool wait (there is no cap): httpx's connect and read timeouts, per socket operation.
        key = (timeout.get("connect"), timeout.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1])
            if len(self._timeouts) < 32:  # an SDK uses one or two; per-request values are not kept
                self._timeouts[key] = found
        return found

    async def handle_async_request(self, request: Any) -> Any:
        lib = self._lib
        headers = request.headers.multi_items()
        try:
            body: Any = request.content or None  # JSON bodies: bytes already
        except lib.RequestNotRead:
            body = _sent(request.stream)  # an upload (multipart): sent as read, never held whole
            # Of unknown length: aiohttp frames it in chunks itself, and refuses to be told to.
            headers = [(name, value) for name, value in headers if name.lower() != "transfer-encoding"]
        try:
            response = await self._session().request(
                request.method,
                URL(str(request.url), encoded=True),  # as httpx encoded it: not requoted, not normalized
                headers=headers,
                data=body,
                allow_redirects=False,  # the client follows redirects, or not, as it is set up to
                timeout=self._timeout(request.extensions.get("timeout") or {}),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except aiohttp.ClientError as error:
            raise _error(error, lib) from error
        except ValueError as error:  # a header httpx's transport refuses too (a line break in a key...)
            raise lib.LocalProtocolError(str(error)) from error
        if not response.content.is_eof():  # a body still on its way (a small one has arrived whole)
            self._watch(response)
        return lib.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=self._body(response),
            extensions={
                "http_version": _VERSIONS.get(response.version, b"HTTP/1.1"),
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    def _watch(self, response: aiohttp.ClientResponse) -> None:
        protocol = response.connection.protocol if response.connection is not None else None
        if protocol is None:
            return
        watch = self._watches.get(protocol)
        if watch is None:
            closed = protocol.closed
            if closed is None:  # already gone: its reader was told
                return
            watch = self._watches[protocol] = _Watch()
            closed.add_done_callback(watch)
        watch.response = weakref.ref(response)

    async def aclose(self) -> None:
        sessions, current = dict(self._sessions), asyncio.get_running_loop()
        self._sessions.clear()
        for loop, session in sessions.items():
            if loop is current:
                await session.close()
            else:
                _discard(loop, session)


class HttpxTransport(_Transport, httpx.AsyncBaseTransport):
    """For an SDK built on ``httpx`` (groq, elevenlabs)."""

    _lib = httpx
    _body = _HttpxBody


class Httpx2Transport(_Transport, httpx2.AsyncBaseTransport):
    """For an SDK built on ``httpx2`` (openai, anthropic)."""

    _lib = httpx2
    _body = _Httpx2Body


def client(cls: type, **kwargs: Any) -> Any:
    """An instance of ``cls``, an SDK's own async client class (``openai.DefaultAsyncHttpxClient``...)
    or httpx's or httpx2's ``AsyncClient``, on an aiohttp transport of its library, not reading the
    environment (no proxy variables)."""
    if issubclass(cls, httpx2.AsyncClient):
        transport: _Transport = Httpx2Transport()
    elif issubclass(cls, httpx.AsyncClient):
        transport = HttpxTransport()
    else:
        raise TypeError(f"{cls.__name__} is neither an httpx nor an httpx2 AsyncClient")
    return cls(transport=transport, trust_env=False, **kwargs)
