"""Gemini API emulator as google-genai calls it: ``POST /{v1,v1beta,v1alpha}/models/{model}:{method}``.

Wire details (checked against google-genai 3.6.1 and recorded traffic, see
/work/shared/reference/wire-formats.md §4):

- google-genai >= 3.0 calls ``/v1/...`` (2.x: ``/v1beta/...``); it joins ``base_url`` and
  ``<api_version>/models/<model>:<method>``, so the base URL is the mount prefix itself.
- auth: ``x-goog-api-key`` header (the SDK) or ``?key=`` (REST users). A wrong key is HTTP 400
  INVALID_ARGUMENT "API key not valid..." with its ErrorInfo, a missing one 403 PERMISSION_DENIED.
- errors: ``{"error": {"code", "message", "status", "details"?}}``, pretty-printed like the real API.
  No Retry-After header: Gemini sends the delay only as ``google.rpc.RetryInfo.retryDelay`` in the
  body, so that is where ``raS`` puts it.
- streaming (``:streamGenerateContent?alt=sse``): ``data: {...}\\r\\n\\r\\n`` chunks, no terminator;
  the last chunk carries finishReason and the final usage. ``nodone`` drops that finishReason,
  ``badN`` makes chunk N non-JSON, a status fault with ``cutN`` sends N chunks then
  ``data: {"error": ...}`` (the SDK raises ClientError/ServerError from it).
- ``policy`` is a prompt blocked by safety filters: HTTP 200 with ``promptFeedback.blockReason``
  SAFETY and no candidates; ``ctx`` is the real 400 "The input token count (N) exceeds...".
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator import google_emu_model as gm
from tests.emulator.core import (
    PREFILL_REFUSAL,
    Emulator,
    Fault,
    FaultSyntaxError,
    abort_connection,
    count_tokens,
    echo_message,
    echo_requested,
    paced,
    parse_model,
    wait_forever,
)

PROVIDER = "google"
VERSIONS = {"v1", "v1beta", "v1alpha"}
METHODS = {"generateContent", "streamGenerateContent", "countTokens"}
CONTEXT_WINDOW = 1_048_576

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential.",
    403: "The caller does not have permission",
    409: "The operation was aborted.",
    429: "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
BAD_KEY = "API key not valid. Please pass a valid API key."
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
JSON_TYPE = "application/json; charset=UTF-8"


def base_url(prefix: str) -> str:
    return prefix


def _duration(seconds: float) -> str:
    """protobuf Duration JSON: whole seconds, or 3 fractional digits."""
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.3f}s"


def error_body(code: int, message: str | None = None, *, model: str = "", retry_after: float | None = None):
    status = STATUSES.get(code, "FAILED_PRECONDITION" if code < 500 else "UNKNOWN")
    error: dict[str, Any] = {"code": code, "message": message or MESSAGES.get(code, status), "status": status}
    details: list[dict[str, Any]] = []
    if code == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10",
                    }
                ],
            }
        )
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            }
        )
    if retry_after is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(retry_after)}
        )
    if details:
        error["details"] = details
    return {"error": error}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, indent=2, ensure_ascii=False), status_code=status, media_type=JSON_TYPE)


def error_response(code: int, message: str | None = None, **kwargs: Any) -> Response:
    return json_response(error_body(code, message, **kwargs), code)


def bad_key_response(message: str = BAD_KEY) -> Response:
    body = error_body(400, message)
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
    ]
    return json_response(body, 400)


def encode(body: Any) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\r\n\r\n"


def malformed(event: bytes) -> bytes:
    data = event[len(b"data: ") :].rstrip()
    return b"data: " + data[: max(len(data) // 2, 1)] + b"\r\n\r\n"


async def drop_connection(request: Request) -> Response:
    abort_connection(request.scope)
    # Lets uvicorn notice the loss, so the placeholder response below is never written.
    await asyncio.sleep(0)
    return Response(status_code=204)


async def _failure(request: Request, fault: Fault, model: str, prompt_tokens: int) -> Response | None:
    """The response of a request fault (before any stream chunk), if one applies."""
    if not fault.fails_request:
        return None
    if fault.latency or fault.slow:
        await asyncio.sleep(fault.latency + fault.slow)
    if fault.reset:
        return await drop_connection(request)
    if fault.hang:
        await wait_forever()
    if fault.kind == "context_length":
        total = CONTEXT_WINDOW + prompt_tokens + 1
        message = f"The input token count ({total}) exceeds the maximum number of tokens allowed ({CONTEXT_WINDOW})."
        return error_response(400, message)
    if fault.kind == "content_policy":
        blocked = gm.blocked_body(model, prompt_tokens)
        if request.path_params["target"].endswith(":streamGenerateContent"):
            return Response(encode(blocked), media_type="text/event-stream")
        return json_response(blocked)
    if fault.status is not None:
        message = echo_message(request.scope) if fault.echo else None
        return error_response(fault.status, message, model=model, retry_after=fault.retry_after)
    return None


def app(emu: Emulator) -> Starlette:
    def authenticate(request: Request) -> Response | None:
        sent = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not sent:
            return error_response(403, NO_KEY)
        if sent != emu.keys.get(PROVIDER):
            # an echo keeps the real words first: a 400 is known for a bad key by its message
            echo = f" {echo_message(request.scope)}" if echo_requested(request.scope) else ""
            return bad_key_response(BAD_KEY + echo)
        return None

    async def models(request: Request) -> Response:
        version = request.path_params["version"]
        model, _, method = request.path_params["target"].rpartition(":")
        if version not in VERSIONS or method not in METHODS or not model:
            return error_response(404, f"Method not found: {request.url.path}")
        denied = authenticate(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error_response(400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return error_response(400, "Invalid JSON payload received. Expected an object.")
        try:
            parse_model(model)
        except FaultSyntaxError:
            return error_response(
                404,
                f"models/{model} is not found for API version {version}, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their supported methods.",
            )
        base, fault = emu.fault(PROVIDER, model)
        try:
            prompt = gm.read_prompt(gm.get(body, "generateContentRequest") or body, base)
        except gm.InvalidArgument as exc:
            return error_response(400, str(exc))
        if fault.noprefill and prompt.prefilled:
            return error_response(400, PREFILL_REFUSAL)
        prompt_tokens = count_tokens(prompt.input_text)
        if method == "countTokens":
            failed = await _failure(request, fault, base, prompt_tokens)
            if failed is not None:
                return failed
            details = [{"modality": "TEXT", "tokenCount": prompt_tokens}] if prompt_tokens else []
            return json_response({"totalTokens": prompt_tokens, "promptTokensDetails": details})
        streaming = method == "streamGenerateContent"
        _, declared = parse_model(model)
        mid_stream_error = streaming and declared.status is not None and declared.cut is not None
        if mid_stream_error and fault.status is None:
            fault, mid_stream_error = replace(fault, cut=None), False  # failing attempts used up
        if not mid_stream_error:
            failed = await _failure(request, fault, base, prompt_tokens)
            if failed is not None:
                return failed
        result = gm.answer(body, prompt, fault)
        if not streaming:
            if fault.latency or fault.slow:
                await asyncio.sleep(fault.latency + fault.slow)
            return json_response(gm.response_body(result))
        chunks = gm.stream_bodies(result, nodone=fault.nodone)
        if request.query_params.get("alt") != "sse":
            # Without alt=sse the API streams one JSON array; only the SSE form is paced.
            return json_response(chunks)
        events = [encode(chunk) for chunk in chunks]
        if mid_stream_error:
            events = events[: fault.cut] + [encode(error_body(fault.status or 500, model=base))]
            fault = replace(fault, cut=None)
        bad = malformed(events[fault.bad]) if fault.bad is not None and fault.bad < len(events) else b""
        # The finish chunk is content, not a droppable terminator: ``nodone`` was applied above.
        stream = paced(replace(fault, nodone=False), events, malformed=bad)
        return StreamingResponse(stream, media_type="text/event-stream")

    return Starlette(routes=[Route("/{version}/models/{target:path}", models, methods=["POST"])])
