"""HTTP plumbing below the API: JSON bodies for Django's own errors, and the request body limit."""

import json

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import JsonResponse

_DJANGO_ERRORS = {400: "bad request", 404: "not found", 405: "method not allowed", 500: "internal error"}


class JsonErrorsMiddleware:
    """Django answers unknown paths and wrong methods with HTML; API clients get ``{"detail"}``."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._convert(request, self.get_response(request))

    async def _acall(self, request):
        return self._convert(request, await self.get_response(request))

    @staticmethod
    def _convert(request, response):
        status = response.status_code
        if status not in _DJANGO_ERRORS or request.path.startswith("/admin/"):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        converted = JsonResponse({"detail": _DJANGO_ERRORS[status]}, status=status)
        if response.has_header("Allow"):
            converted["Allow"] = response["Allow"]
        return converted


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class NoNulInUrl:
    """ASGI guard: a NUL character in the path or query is a 400, for every page, admin included.

    PostgreSQL cannot compare text with NUL in it, so a lookup built from such a URL (a path
    parameter, the admin's search and filters) would fail as a server error.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":  # lifespan scopes have no path or query
            query = scope["query_string"]
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                return await _send_json(send, 400, "bad request: NUL characters are not allowed in the URL")
        return await self.app(scope, receive, send)


class NoClientRootPath:
    """ASGI guard: the proxy is served at the root of its host, whatever a client's headers say.

    daphne takes ``root_path`` from a ``Daphne-Root-Path`` request header. The guards and the request
    log decide on the whole path while Django routes on the path less the root path, so with
    ``/zz/agent/run`` and a root path of ``/zz`` a request was served unlogged, under another
    endpoint's body limit. A reverse proxy that mounts the proxy under a prefix must strip it.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("root_path"):
            scope = {**scope, "root_path": ""}
        return await self.app(scope, receive, send)


class BodyLimit:
    """ASGI guard: refuse a body over the limit with 413 before Django buffers it.

    Django's handler reads the whole body before any view runs, so the limit must be enforced
    here: by Content-Length up front, and by counting for chunked uploads. The larger limits of
    the upload endpoints are for requests that carry a bearer token: anyone else is answered 401
    anyway, and must not make the server store 25 MB first.
    """

    def __init__(self, app):
        self.app = app

    @staticmethod
    def limit_for(path: str, authorization: bytes | None) -> int:
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            for prefix, limit in settings.QALBY_BODY_LIMITS:
                if path.startswith(prefix):
                    return limit
        return settings.QALBY_MAX_BODY_BYTES

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self.limit_for(scope["path"], headers.get(b"authorization"))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(send, limit)
        received = 0
        refused = False

        async def counting_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        await _send_json(send, 413, f"request body too large (limit {limit} bytes)")


_REQUEST_ID = __import__("re").compile(r"^[A-Za-z0-9._:-]{1,128}$")


_HOST_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestIdMiddleware:
    """Every request gets an id (the client's X-Request-ID when it is sane), echoed on the response."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        import uuid

        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        try:
            # The Host check CommonMiddleware does on the admin's stack; probes and scrapers come by pod IP.
            if request.path not in _HOST_EXEMPT:
                request.get_host()
        except DisallowedHost:
            response = JsonResponse({"detail": "bad request: host not allowed"}, status=400)
        else:
            response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response


class RequestLogMiddleware:
    """Starts a request log entry for every API call and submits it when the answer, or the stream, ends.

    Every call made with a valid client key is logged, refusals included. A call refused without
    one (no or a wrong key, a path no route matches, a method a route does not take) is only counted
    by status in ``qalby_unauthenticated_requests_total``: anyone can send those, and a row each
    would let them fill the table. Submitting only queues the entry (providers.logs); the database
    write happens off the request path.
    """

    async_capable = True
    sync_capable = False
    LOGGED_PREFIXES = ("/agent/", "/audio/", "/providers/")

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        from providers import logs, metrics
        from qalby_site import lifecycle

        if not request.path.startswith(self.LOGGED_PREFIXES):
            return await self.get_response(request)
        entry = logs.Entry(request_id=request.request_id, endpoint="")
        # Django runs each request in its own task, so this stays with this request (and its log lines).
        logs.current.set(entry)
        lifecycle.started()
        try:
            response = await self.get_response(request)
            principal = await _client_key(request)
        except BaseException:
            lifecycle.finished()
            raise
        entry.endpoint = _endpoint(request)
        if principal is None and response.status_code >= 400:
            metrics.refused(response.status_code)
            lifecycle.finished()
            return response
        if principal is not None and principal is not _UNVERIFIED:
            entry.client_key_name, entry.client_key_prefix = principal.name, principal.prefix
        if response.streaming and response.status_code < 400:
            response.streaming_content = _finish_after_stream(entry, response.status_code, response.streaming_content)
            return response
        if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
            entry.error = _detail(response.content)
        _submit(entry, response.status_code)
        lifecycle.finished()
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
    from django.db import DatabaseError

    from providers.auth import authenticate

    principal = getattr(request, "auth", None)
    if principal is not None:
        return principal
    # The view did not accept a key: none matched the path or method, or the key lacks the scope.
    # Authenticated requests are logged even then; the lookup is cached, as for the views.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return await authenticate(token.strip())
    except DatabaseError:
        return _UNVERIFIED  # keep the log: better an anonymous row than a lost authenticated request


def _detail(content: bytes) -> str:
    try:
        return str(json.loads(content).get("detail", ""))
    except (ValueError, AttributeError):
        return ""


def _submit(entry, status: int, outcome: str | None = None) -> None:
    from providers import logs, metrics, tracing

    entry.finish(status, outcome or entry.outcome or None)
    metrics.observe(entry)
    tracing.export(entry)
    logs.submit(entry)


async def _finish_after_stream(entry, status: int, content):
    from providers import logs, metrics
    from qalby_site import lifecycle

    # The stream is sent after the view returned: the engine and services note into the entry from here.
    logs.current.set(entry)
    metrics.STREAMS_IN_FLIGHT.inc()
    ended = "cancelled"  # unless the stream runs to its end: the client left, or the server stopped
    try:
        async for chunk in content:
            yield chunk
        ended = None
    finally:
        metrics.STREAMS_IN_FLIGHT.dec()
        _submit(entry, status, entry.outcome or ended or "ok")
        lifecycle.finished()
