"""The one NinjaAPI: every router, and the one place where errors become HTTP responses."""

import hmac
import logging

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.api import router as agent_router
from agent.v1 import error_body as v1_error_body
from agent.v1 import is_v1
from agent.v1 import router as v1_router
from audio.api import router as audio_router
from audio.v1 import router as audio_v1_router
from providers import db, outage
from providers.api import router as providers_router
from providers.exceptions import AllAttemptsFailed, DatabaseUnavailable, QalbyError, UnknownProviderUid
from providers.routes.api import router as routes_router
from qalby_site import __version__
from qalby_site.middleware import error_body

logger = logging.getLogger("qalby.api")

api = NinjaAPI(
    title="Qalby Proxy",
    version=__version__,
    description="One API for AI providers: chat, speech and transcription with fallbacks.",
    docs_url="/docs",
    urls_namespace="api",
)
api.add_router("/providers", providers_router)
api.add_router("/agent", agent_router)
api.add_router("/audio", audio_router)
# Before /v1, whose router answers every other /v1 path with a 404.
api.add_router("/v1/audio", audio_v1_router)
api.add_router("/v1", v1_router)
api.add_router("/routes", routes_router)


def _error(request, status: int, detail: str, *, param: str | None = None, code: str | None = None,
           errors: list[dict] | None = None, **extra) -> JsonResponse:
    """Our ``{"detail": ...}`` body, or under ``/v1/`` OpenAI's error object (with ``param`` and
    ``code``, which only that shape has), so that the openai SDK raises its typed exceptions."""
    request_id = getattr(request, "request_id", None)
    if is_v1(request.path):
        body = v1_error_body(status, detail, param=param, code=code, **extra,
                             **({"errors": errors} if errors else {}),
                             **({"request_id": request_id} if request_id else {}))
        return JsonResponse(body, status=status)
    if status == 400 and not errors and param:
        errors = [{"field": param, "message": detail}]
    return JsonResponse(error_body(status, detail, request_id, errors, **extra), status=status)


_SOURCES = {"body", "query", "path", "form", "file", "header", "cookie"}


def _where(loc) -> str:
    """The field a client named: without Ninja's leading parameter source and payload argument name,
    nor the tag of the shape a union body was read as (so a field called ``file`` keeps its name)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    if parts and parts[0] in ("payload", "fields"):  # the views' names for a body or form model
        parts = parts[1:]
    if parts and parts[0] in ("single", "fallback", "route"):
        parts = parts[1:]
    return ".".join(parts) or "body"


# Endpoints that read form fields, and what to use instead for a JSON body.
_JSON_TWINS = {"/audio/transcribe": "POST /audio/transcribe_json (the audio in base64)"}
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _message(error: dict) -> str:
    # pydantic prefixes what a validator raises with its class ("Value error, ..."): not for users.
    message = error.get("msg", "invalid")
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _not_a_form(request, exc: NinjaValidationError) -> JsonResponse | None:
    """A form endpoint sent something else (JSON, most often): say what it takes, not which of its
    fields the JSON lacked."""
    content_type = request.content_type or ""
    if content_type in _FORM_TYPES or not any(e.get("loc", ("",))[0] in ("form", "file") for e in exc.errors):
        return None
    twin = _JSON_TWINS.get(request.path)
    detail = (f"{request.path} takes multipart/form-data (curl -F 'file=@audio.wav' -F provider_uid=... -F model=...), "
              f"not {content_type or 'a body without a Content-Type'}" + (f"; for JSON, use {twin}" if twin else ""))
    return _error(request, 415, detail)


@api.exception_handler(NinjaValidationError)
def on_validation_error(request, exc: NinjaValidationError):
    not_a_form = _not_a_form(request, exc)
    if not_a_form is not None:
        return not_a_form
    errors = [{"field": _where(e.get("loc", ())), "message": _message(e)} for e in exc.errors]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return _error(request, 400, detail, errors=errors, param=errors[0]["field"] if errors else None)


@api.exception_handler(DjangoValidationError)
def on_model_validation_error(request, exc: DjangoValidationError):
    if hasattr(exc, "message_dict"):
        errors = [{"field": field if field != "__all__" else "body", "message": " ".join(messages)}
                  for field, messages in exc.message_dict.items()]
    else:
        errors = [{"field": "body", "message": " ".join(exc.messages)}]
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] != "body" else e["message"] for e in errors)
    return _error(request, 400, detail, errors=errors, param=errors[0]["field"])


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    response = _error(request, 401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                      code="invalid_api_key")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(AllAttemptsFailed)
def on_all_attempts_failed(request, exc: AllAttemptsFailed):
    extra = {"error_type": exc.error_type} if exc.error_type else {}
    response = _error(request, exc.status, exc.detail, **extra, attempts=[a.public() for a in exc.attempts])
    if exc.retry_after is not None:
        response["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def _configured(request, exc: UnknownProviderUid) -> str:
    scopes = getattr(request.auth, "scopes", ())
    if "manage" not in scopes:
        return "; a key with the manage scope lists the configured ones: GET /providers/configs"
    if not exc.configured:
        return "; no provider config exists yet: create one with POST /providers/config"
    listed = ", ".join(exc.configured[:exc.LISTED]) + (", ..." if len(exc.configured) > exc.LISTED else "")
    return f"; the configured ones: {listed}"


@api.exception_handler(QalbyError)
def on_qalby_error(request, exc: QalbyError):
    detail = exc.detail + (_configured(request, exc) if isinstance(exc, UnknownProviderUid) else "")
    response = _error(request, exc.status, detail, param=getattr(exc, "param", None), code=getattr(exc, "code", None))
    if getattr(exc, "retry_after", None) is not None:
        response["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def on_infrastructure_error(request, exc):
    # Not a bug of the request: the database or Redis could not be reached. One log line per outage
    # (providers/outage.py), not a traceback per request.
    return on_qalby_error(request, outage.as_unavailable(exc))


for _kind in outage.INFRASTRUCTURE:
    api.add_exception_handler(_kind, on_infrastructure_error)


@api.exception_handler(RequestDataTooBig)
def on_too_big(request, exc):
    return _error(request, 413, "request body too large")


@api.exception_handler(Http404)
@api.exception_handler(ObjectDoesNotExist)
def on_not_found(request, exc):
    return _error(request, 404, "not found")


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc.message))


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    # Never a traceback to the client; the log line has the type, not the message (it may hold input).
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path, exc_info=exc)
    return _error(request, 500, "internal error")


@api.get("/", auth=None, tags=["health"])
async def index(request):
    """What this server is, and where to go from here."""
    return {"name": "Qalby Proxy", "version": __version__, "docs": "/docs", "openapi": "/openapi.json",
            "admin": "/admin/", "health": "/healthz", "ready": "/readyz"}


@api.get("/healthz", auth=None, tags=["health"])
async def healthz(request):
    """The process is alive."""
    return {"status": "ok"}


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@api.get("/metrics", auth=None, tags=["health"], include_in_schema=False)
async def metrics_view(request):
    """Prometheus metrics; only with QALBY_METRICS_TOKEN set, and only for a caller presenting it."""
    token = settings.QALBY_METRICS_TOKEN
    if not token:
        return _error(request, 404, "metrics are disabled (set QALBY_METRICS_TOKEN)")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        response = _error(request, 401, "metrics need 'Authorization: Bearer <QALBY_METRICS_TOKEN>'")
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = import_string(settings.QALBY_METRICS_REGISTRY)()
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@api.get("/readyz", auth=None, tags=["health"], response={200: dict, 503: dict})
async def readyz(request):
    """The process can serve. While its database is unreachable it still serves what it has cached
    (`"status": "degraded"`, 200) for up to QALBY_STALE_SECONDS: taking every replica out of service
    at once would turn a database blip into a full outage. After that, or if it never read anything,
    503."""
    try:
        await db.run(_database_ping)
    except DatabaseUnavailable:
        lasted = outage.outage_seconds()
        body = {"database": "unavailable", "outage_seconds": round(lasted or 0.0, 1)}
        if lasted is not None and lasted < settings.QALBY_STALE_SECONDS and outage.cached_anything():
            return {"status": "degraded", **body,
                    "detail": "serving cached provider configs, client keys and routes; writes answer 503"}
        return Status(503, {"status": "unavailable", **body, "detail": "database unreachable"})
    return {"status": "ok"}
