"""Anthropic Messages API emulator (``POST /v1/messages``, ``/v1/messages/count_tokens``).

Wire details (checked against anthropic 2.14.0 and recorded traffic, see
/work/shared/reference/wire-formats.md §3):

- auth: ``Authorization: Bearer <key>`` (SDK >= 2.0) or ``x-api-key`` (SDK 1.x); any
  ``anthropic-version`` is accepted.
- errors: ``{"type":"error","error":{"type":..,"message":..},"request_id":..}`` plus a
  ``request-id`` header (the SDK exposes it as ``err.request_id``).
- ``raS`` sends ``retry-after`` and ``retry-after-ms``; the SDK prefers the latter.
- ``policy`` is the real 400 "Output blocked by content filtering policy"; ``ctx`` the real
  400 "prompt is too long: N tokens > 200000 maximum".
- a status fault combined with ``cutN`` on a streaming request sends N events and then the
  mid-stream ``event: error`` form (the SDK raises ``APIStatusError`` with status 200).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.emulator import anthropic_emu_stream as sse
from tests.emulator.anthropic_emu_model import BadRequest, build_message, new_id, read_prompt
from tests.emulator.core import (
    PREFILL_REFUSAL,
    Emulator,
    Fault,
    FaultSyntaxError,
    abort_connection,
    bearer_or_header,
    count_tokens,
    echo_message,
    echo_requested,
    paced,
    parse_model,
    wait_forever,
)

PROVIDER = "anthropic"
CONTEXT_WINDOW = 200_000

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed your account's rate limit. Please try again later.",
    500: "Internal server error",
    529: "Overloaded",
}


def base_url(prefix: str) -> str:
    return prefix


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    text = (
        message
        or ERROR_MESSAGES.get(status)
        or ("Invalid request." if status < 500 else "Internal server error")
    )
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": new_id("req")}


def error_response(status: int, message: str | None = None, retry_after: float | None = None) -> JSONResponse:
    body = error_body(status, message)
    headers = {"request-id": body["request_id"]}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    return JSONResponse(body, status_code=status, headers=headers)


# ---- HTTP -------------------------------------------------------------------------------------


async def drop_connection(request: Request) -> Response:
    abort_connection(request.scope)
    # Lets uvicorn notice the loss, so the placeholder response below is never written.
    await asyncio.sleep(0)
    return Response(status_code=204)


def _authenticate(emu: Emulator, request: Request) -> Response | None:
    sent = bearer_or_header(dict(request.headers), "x-api-key")
    if sent is None:
        return error_response(401, "x-api-key header is required")
    if sent != emu.keys.get(PROVIDER):
        if echo_requested(request.scope):
            return error_response(401, echo_message(request.scope))
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        return error_response(401, "Invalid bearer token" if bearer else "invalid x-api-key")
    return None


async def _read(emu: Emulator, request: Request) -> tuple[dict[str, Any], str, Fault] | Response:
    """Auth, JSON body, model and fault; or the error response that ends the request."""
    denied = _authenticate(emu, request)
    if denied is not None:
        return denied
    try:
        body = json.loads(await request.body())
    except ValueError:
        return error_response(400, "There was an error parsing the body of your request.")
    if not isinstance(body, dict):
        return error_response(400, "Input should be a valid dictionary")
    model = body.get("model")
    if not isinstance(model, str):
        return error_response(400, "model: Field required")
    try:
        parse_model(model)
    except FaultSyntaxError:
        return error_response(404, f"model: {model}")
    base, fault = emu.fault(PROVIDER, model)
    return body, base, fault


async def _failure(request: Request, fault: Fault, prompt_tokens: int) -> Response | None:
    """The response of a request fault (before any stream event), if one applies."""
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
        return error_response(400, f"prompt is too long: {total} tokens > {CONTEXT_WINDOW} maximum")
    if fault.kind == "content_policy":
        return error_response(400, "Output blocked by content filtering policy")
    if fault.status is not None:
        message = echo_message(request.scope) if fault.echo else None
        return error_response(fault.status, message, retry_after=fault.retry_after)
    return None


def app(emu: Emulator) -> Starlette:
    async def messages(request: Request) -> Response:
        read = await _read(emu, request)
        if isinstance(read, Response):
            return read
        body, base, fault = read
        if not isinstance(body.get("max_tokens"), int):
            return error_response(400, "max_tokens: Field required")
        try:
            prompt = read_prompt(body, base)
        except BadRequest as exc:
            return error_response(400, str(exc))
        if fault.noprefill and prompt.prefilled:
            return error_response(400, PREFILL_REFUSAL)
        _, declared = parse_model(body["model"])
        mid_stream_error = (
            bool(body.get("stream")) and declared.status is not None and declared.cut is not None
        )
        if mid_stream_error and fault.status is None:
            fault, mid_stream_error = replace(fault, cut=None), False  # failing attempts used up
        if not mid_stream_error:
            failed = await _failure(request, fault, count_tokens(prompt.input_text))
            if failed is not None:
                return failed
        message = build_message(body, prompt, fault)
        headers = {"request-id": new_id("req")}
        if not body.get("stream"):
            if fault.latency or fault.slow:
                await asyncio.sleep(fault.latency + fault.slow)
            return JSONResponse(message, headers=headers)
        events = sse.message_events(message)
        terminator = [sse.encode({"type": "message_stop"})]
        if mid_stream_error:
            failure = error_body(fault.status or 500)
            del failure["request_id"]  # the documented mid-stream form has none
            events = events[: fault.cut] + [sse.encode(failure)]
            terminator, fault = [], replace(fault, cut=None)
        every = events + terminator
        malformed = (
            sse.malformed(every[fault.bad]) if fault.bad is not None and fault.bad < len(every) else b""
        )
        stream = paced(fault, events, malformed=malformed, terminator=terminator)
        return StreamingResponse(stream, media_type="text/event-stream; charset=utf-8", headers=headers)

    async def count(request: Request) -> Response:
        read = await _read(emu, request)
        if isinstance(read, Response):
            return read
        body, base, fault = read
        try:
            prompt = read_prompt(body, base)
        except BadRequest as exc:
            return error_response(400, str(exc))
        failed = await _failure(request, fault, count_tokens(prompt.input_text))
        if failed is not None:
            return failed
        return JSONResponse({"input_tokens": count_tokens(prompt.input_text)})

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count, methods=["POST"]),
        ]
    )
