"""The OpenAI-compatible API under ``/v1``: an app using the openai SDK switches to the proxy by its
``base_url`` (``<proxy>/v1``) and ``api_key`` (a client key with the ``use`` scope).

Errors under ``/v1`` come in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``):
the site's error handlers (qalby_site/api.py) build them with :func:`error_body` when :func:`is_v1`.
Every other path and method under ``/v1`` is a 404 in that shape.
"""

from django.http import JsonResponse, StreamingHttpResponse
from ninja import Body, Router

from agent import v1_services
from agent.v1_mapping import UnknownUrl, error_body, is_v1
from agent.v1_schemas import ChatCompletionIn
from providers.auth import ClientKeyAuth

__all__ = ["error_body", "is_v1", "router"]

router = Router(tags=["openai-compatible"])
_USE = ClientKeyAuth("use")
_OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.post("/chat/completions", auth=_USE)
async def chat_completions(request, payload: Body[ChatCompletionIn]):
    """OpenAI's Chat Completions, whole or streamed (server-sent events). ``model`` is
    ``provider_uid/model``. The ``X-Qalby-Attempts`` header lists the attempts, ``uid/model=status``."""
    if payload.stream:
        events, attempts = await v1_services.chat_completion_stream(payload, request.auth, request.request_id)
        response = StreamingHttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must pass events through as they come
    else:
        body, attempts = await v1_services.chat_completion(payload, request.auth, request.request_id)
        response = JsonResponse(body)
    response["X-Qalby-Attempts"] = attempts
    return response


@router.get("/models", auth=_USE)
async def models(request):
    """OpenAI's model list: the models a client may name (routes, once they are listed)."""
    return {"object": "list", "data": await v1_services.models_for(request.auth)}


def _unknown(request):
    raise UnknownUrl(request.method, request.path)


def _unknown_path(request, rest: str):
    raise UnknownUrl(request.method, request.path)


# Known paths with another method, and every other path: OpenAI's 404 "Invalid URL", with or without a key.
router.api_operation(_OTHER_METHODS, "/chat/completions", auth=None, include_in_schema=False)(_unknown)
router.api_operation(["POST", "PUT", "PATCH", "DELETE", "OPTIONS"], "/models", auth=None,
                     include_in_schema=False)(_unknown)
router.api_operation(["POST", *_OTHER_METHODS], "/{path:rest}", auth=None, include_in_schema=False)(_unknown_path)
router.api_operation(["POST", *_OTHER_METHODS], "", auth=None, include_in_schema=False)(_unknown)
