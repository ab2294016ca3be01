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


class BodyLimit:
    """ASGI guard: refuse a body over the limit with 413 before Django buffers it.

    Django's handler reads the whole body before any view runs, so the limit must be enforced
    here: by Content-Length up front, and by counting for chunked uploads.
    """

    def __init__(self, app):
        self.app = app

    @staticmethod
    def limit_for(path: str) -> int:
        for prefix, limit in settings.QALBY_BODY_LIMITS:
            if path.startswith(prefix):
                return limit
        return settings.QALBY_MAX_BODY_BYTES

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
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
        body = json.dumps({"detail": f"request body too large (limit {limit} bytes)"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


_REQUEST_ID = __import__("re").compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
            request.get_host()  # the Host check CommonMiddleware does on the admin's stack
        except DisallowedHost:
            response = JsonResponse({"detail": "bad request: host not allowed"}, status=400)
        else:
            response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response
