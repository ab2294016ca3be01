"""The middleware that opens a request log entry for every API call and submits it when the answer ends.

It sits in the API's middleware stack (``QALBY_API_MIDDLEWARE``) after the site's request id
middleware, whose ``request.request_id`` it records.
"""

import json

from asgiref.sync import markcoroutinefunction
from django.db import DatabaseError

from providers.auth import authenticate, bearer_token
from providers.exceptions import DatabaseUnavailable
from providers.requestlogs import metrics, shutdown, tracing
from providers.requestlogs.batching import submit
from providers.requestlogs.entry import Entry, current


class RequestLogMiddleware:
    """Starts a request log entry for every API call and submits it when the answer, or the stream, ends.

    Every call made with a valid client key is logged, refusals included. A call refused without
    one (no or a wrong key, a path no route matches, a method a route does not take) is only counted
    by status in ``qalby_unauthenticated_requests_total``: anyone can send those, and a row each
    would let them fill the table. Submitting only queues the entry (see batching.py); the database
    write happens off the request path.
    """

    async_capable = True
    sync_capable = False
    LOGGED_PREFIXES = ("/agent/", "/v1/", "/audio/", "/providers/")

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        if not request.path.startswith(self.LOGGED_PREFIXES):
            return await self.get_response(request)
        entry = Entry(request_id=request.request_id, endpoint="")
        # Django runs each request in its own task, so this stays with this request.
        current.set(entry)
        shutdown.started()
        try:
            response = await self.get_response(request)
            principal = await _client_key(request)
        except BaseException:
            shutdown.finished()
            raise
        entry.endpoint = _endpoint(request)
        if principal is None and response.status_code >= 400:
            metrics.refused(response.status_code)
            shutdown.finished()
            return response
        if principal is not None and principal is not _UNVERIFIED:
            entry.client_key_name, entry.client_key_prefix = principal.name, principal.prefix
        if response.streaming and response.status_code < 400:
            response.streaming_content = _finish_after_stream(entry, response.status_code, response.streaming_content)
            return response
        if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
            entry.error = _detail(response.content)
        _submit(entry, response.status_code)
        shutdown.finished()
        return response


# Label values come from fixed sets: a client choosing them could grow the metrics without bound.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNVERIFIED = object()  # a key was sent but the database could not say whose


def _endpoint(request) -> str:
    """The route the request matched, as ``POST /providers/config/{uid}``; never the client's own path."""
    method = request.method if request.method in _METHODS else "OTHER"
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return f"{method} unmatched"
    return f"{method} /{match.route}".replace("<", "{").replace(">", "}")


async def _client_key(request):
    """The principal of the valid client key the request carried; None without one, _UNVERIFIED if unknowable."""
    principal = getattr(request, "auth", None)
    if principal is not None:
        return principal
    # The view did not accept a key: none matched the path or method, or the key lacks the scope.
    # Authenticated requests are logged even then; the lookup is cached, as for the views.
    token = bearer_token(request)
    if token is None:
        return None
    try:
        return await authenticate(token)
    except (DatabaseError, DatabaseUnavailable):
        return _UNVERIFIED  # keep the log: better an anonymous row than a lost authenticated request


def _detail(content: bytes) -> str:
    try:
        return str(json.loads(content).get("detail", ""))
    except (ValueError, AttributeError):
        return ""


def _submit(entry: Entry, status: int, outcome: str | None = None) -> None:
    entry.finish(status, outcome or entry.outcome or None)
    metrics.observe(entry)
    tracing.export(entry)
    submit(entry)


async def _finish_after_stream(entry: Entry, status: int, content):
    # The stream is sent after the view returned: the engine and services note into the entry from here.
    current.set(entry)
    metrics.STREAMS_IN_FLIGHT.inc()
    ended = "cancelled"  # unless the stream runs to its end: the client left, or the server stopped
    try:
        async for chunk in content:
            yield chunk
        ended = None
    finally:
        metrics.STREAMS_IN_FLIGHT.dec()
        _submit(entry, status, entry.outcome or ended or "ok")
        shutdown.finished()
