"""HTTP plumbing below the API: ASGI guards (NUL in the URL, the client's root path, the body limit),
the request id of every request, and JSON bodies for Django's own errors.

The request logs' middleware belongs to the providers app: the site names it only in
``QALBY_API_MIDDLEWARE``.
"""

import itertools
import json
import os
import re
import sys

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import JsonResponse
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware

from qalby_site.logformat import current_request_id

_DJANGO_ERRORS = {400: "bad request", 404: "not found", 405: "method not allowed", 500: "internal error"}


def error_body(status: int, detail: str, request_id: str | None, errors: list[dict] | None = None,
               **extra) -> dict:
    """Every ``{"detail": ...}`` error this site writes: with the request id (what a user quotes to
    an operator) and, on a 400, the ``errors`` list of what to fix (one entry for the whole body
    when no field is to blame)."""
    body = {"detail": detail, **extra}
    if status == 400:
        body["errors"] = errors or [{"field": "body", "message": detail}]
    if request_id:
        body["request_id"] = request_id
    return body


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
        detail = _DJANGO_ERRORS[status]
        allow = response.get("Allow")
        if status == 405 and allow:
            detail = f"method {request.method} not allowed on {request.path}: use {allow}"
        elif status == 404:
            detail = f"not found: no endpoint {request.path} (the endpoints are listed at /docs)"
        converted = JsonResponse(error_body(status, detail, getattr(request, "request_id", None)), status=status)
        if allow:
            converted["Allow"] = allow
        return converted


async def _send_json(send, status: int, detail: str, close: bool = False, errors: list[dict] | None = None) -> None:
    # Refused below Django, so no request id was given yet: one is made for the answer.
    request_id = _new_request_id()
    body = json.dumps(error_body(status, detail, request_id, errors)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode())]
    if close:  # the request's body is left unread: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
                detail = "bad request: NUL characters are not allowed in the URL"
                return await _send_json(send, 400, detail, errors=[{"field": "url", "message": detail}])
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
        await _send_json(send, 413, f"request body too large (limit {limit} bytes)", close=True)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# 32 hex digits like a UUID's, unique without a random read per request (uuid4 was 2% of the CPU of
# a proxied chat under load): this process's random half, then a count. Ids name requests; they
# grant nothing, so they need not be unpredictable.
_ID_PREFIX, _ids = os.urandom(8).hex(), itertools.count()


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"



_HOST_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestIdMiddleware:
    """Every request gets an id (the client's X-Request-ID when it is sane), echoed on the response.

    The id is ``request.request_id``, and ``current_request_id`` while the request is served (and
    its stream sent): its log lines carry it.
    """

    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.match(given) else _new_request_id()
        # Django runs each request in its own task, so this stays with this request.
        current_request_id.set(request.request_id)
        try:
            # The Host check CommonMiddleware does on the admin's stack; probes and scrapers come by pod IP.
            if request.path not in _HOST_EXEMPT:
                request.get_host()
        except DisallowedHost:
            response = JsonResponse(error_body(400, "bad request: host not allowed", request.request_id), status=400)
        else:
            response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response


class SecurityMiddleware(DjangoSecurityMiddleware):
    """Django's SecurityMiddleware (the SSL redirect and HSTS, on the API's stack behind TLS), run
    inline: its checks are computations, and as a sync middleware it cost two thread hops a request."""

    async def __acall__(self, request):
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        return self.process_response(request, response)


def server_error(request):
    """Django's last resort (``handler500``), for errors outside the API's own handlers (the admin,
    middleware): JSON, never a traceback; 503 with Retry-After when the database or Redis could not
    be reached, which is an outage to wait out, not a bug."""
    from providers import outage

    error = sys.exc_info()[1]
    request_id = getattr(request, "request_id", None)
    if not isinstance(error, outage.INFRASTRUCTURE):
        return JsonResponse(error_body(500, "internal error", request_id), status=500)
    unavailable = outage.as_unavailable(error)
    response = JsonResponse(error_body(503, unavailable.detail, request_id), status=503)
    response["Retry-After"] = str(round(unavailable.retry_after))
    return response
