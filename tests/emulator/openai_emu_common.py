"""What every OpenAI-compatible emulator shares: auth, error bodies, the fault gate, SSE framing.

OpenAI and Groq speak the same wire format with different error texts and extras, so each is a
``Dialect`` and the endpoint modules (chat, responses, audio) take one as a parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.emulator.core import (
    Emulator,
    Fault,
    FaultSyntaxError,
    abort_connection,
    bearer_or_header,
    count_tokens,
    echo_message,
    echo_requested,
    parse_model,
)

JSON = "application/json"
LANGUAGES = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "ar": "arabic",
}
SSE = "text/event-stream; charset=utf-8"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def data_event(payload: Any) -> bytes:
    """A Chat Completions style SSE event: ``data:`` only, no ``event:`` line."""
    return b"data: " + dumps(payload) + b"\n\n"


def named_event(payload: dict[str, Any]) -> bytes:
    """A Responses style SSE event: an ``event:`` line equal to the JSON ``type``."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Reset(Response):
    """A response that resets the TCP connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope, receive, send) -> None:
        abort_connection(scope)
        cycle = scope["emulator.raw_send"].__self__
        # uvicorn marks the cycle disconnected in connection_lost (scheduled by the abort); until
        # then it would answer our silence with its own 500, so let the loop run it first.
        for _ in range(50):
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0)


async def hang(request: Request) -> Response:
    """Never answer; return (to nobody) once the client has gone, so no task outlives it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3600):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    return Response(status_code=499)


class Dialect:
    """OpenAI's own wire details; subclasses change what differs for a compatible provider."""

    provider = "openai"
    #: whether error bodies carry ``param`` even when it is null (OpenAI's do, Groq's do not)
    always_param = True
    #: the wait a 429 names (message, x-ratelimit-reset-*) when the fault gives no ``raS``
    default_wait = 20.0

    # ---- headers -----------------------------------------------------------------------------

    def headers(self, *, limited: float | None = None) -> dict[str, str]:
        """Headers of every answer: request id and rate-limit counters (exhausted on a 429)."""
        return {
            "x-request-id": new_id("req_", 32),
            "openai-processing-ms": "12",
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "0" if limited is not None else "9999",
            "x-ratelimit-reset-requests": f"{_num(limited)}s" if limited is not None else "6ms",
            "x-ratelimit-limit-tokens": "30000000",
            "x-ratelimit-remaining-tokens": "29999000",
            "x-ratelimit-reset-tokens": "0s",
        }

    # ---- error bodies ------------------------------------------------------------------------

    def error(
        self, message: str, type_: str, code: str | int | None = None, param: str | None = None
    ) -> dict:
        body: dict[str, Any] = {"message": message, "type": type_}
        if self.always_param or param is not None:
            body["param"] = param
        body["code"] = code
        return {"error": body}

    def auth_error(self, key: str | None) -> dict:
        if not key:
            return self.error(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
            )
        masked = key[:3] + "*" * max(len(key) - 7, 1) + key[-4:] if len(key) > 8 else key
        return self.error(
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def status_error(self, status: int, model: str, retry_after: float | None) -> dict:
        wait = _num(retry_after if retry_after is not None else self.default_wait)
        known = {
            400: ("Invalid request.", "invalid_request_error", None),
            403: (
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            ),
            404: (
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
            429: (
                f"Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
                f"Limit 3, Used 3, Requested 1. Please try again in {wait}s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
            ),
            500: (
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            502: ("Bad gateway.", "cf_bad_gateway", 502),
            503: ("The server is overloaded or not ready yet.", "server_error", None),
            504: ("Gateway timeout.", "cf_gateway_timeout", 504),
        }
        if status == 401:
            return self.auth_error("sk-emulated-fault")
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        message, type_, code = known.get(status) or (f"Emulated HTTP {status} error.", default_type, None)
        return self.error(message, type_, code)

    def context_error(self, model: str, param: str) -> dict:
        if param == "input":  # the Responses API words it differently
            return self.error(
                "Your input exceeds the context window of this model. Please adjust your input and try again.",
                "invalid_request_error",
                "context_length_exceeded",
                param,
            )
        return self.error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130012 "
            "tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            param,
        )

    def policy_error(self, model: str) -> dict:
        return self.error(
            "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again "
            "with a different prompt: https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
            "invalid_request_error",
            "invalid_prompt",
        )

    def unknown_url(self, method: str, path: str) -> dict:
        return self.error(f"Invalid URL ({method} {path})", "invalid_request_error")

    def stream_error(self, status: int, model: str) -> dict:
        """The ``data:`` payload of an error that interrupts a Chat Completions stream."""
        return self.status_error(status, model, None)

    # ---- audio -------------------------------------------------------------------------------

    def extras(self) -> dict[str, Any]:
        """Provider-specific top-level fields of a JSON answer."""
        return {}

    def language_name(self, code: str) -> str:
        """How ``verbose_json`` names a language (Whisper says "english")."""
        return LANGUAGES.get(code, code)

    def transcription_usage(self, model: str, text: str, seconds: float, *, verbose: bool) -> dict[str, Any]:
        if verbose or model.startswith("whisper"):
            return {"usage": {"type": "duration", "seconds": math.ceil(seconds)}}
        tokens, audio = count_tokens(text), max(int(seconds * 10), 1)
        details = {"text_tokens": 0, "audio_tokens": audio}
        usage = {
            "type": "tokens",
            "input_tokens": audio,
            "input_token_details": details,
            "output_tokens": tokens,
        }
        return {"usage": {**usage, "total_tokens": audio + tokens}}

    # ---- answers and the fault gate ---------------------------------------------------------------

    def json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(dumps(payload), status, {**self.headers(), **(headers or {})}, JSON)

    def error_response(self, status: int, body: dict, *, retry_after: float | None = None) -> Response:
        wait = retry_after if retry_after is not None else self.default_wait
        headers = self.headers(limited=wait if status == 429 else None)
        if retry_after is not None:
            headers["retry-after"] = _num(retry_after)
            headers["retry-after-ms"] = str(round(retry_after * 1000))
        return Response(dumps(body), status, headers, JSON)

    def check_key(self, emu: Emulator, request: Request) -> Response | None:
        key = bearer_or_header(request.headers)
        if key != emu.keys.get(self.provider):
            if echo_requested(request.scope):
                echoed = self.error(echo_message(request.scope), "invalid_request_error", "invalid_api_key")
                return self.error_response(401, echoed)
            return self.error_response(401, self.auth_error(key))
        return None

    async def admit(
        self, emu: Emulator, request: Request, model: Any, *, param: str = "messages", stream: bool = False
    ) -> tuple[str, Fault] | Response:
        """Apply the request-level faults of ``model``; returns (base model, fault) to go on with.

        On a stream, ``eNNN~cutN`` is not an HTTP error: the stream starts and the error arrives
        in-band after N events (see ``midstream``), so it passes the gate.
        """
        if not isinstance(model, str) or not model:
            return self.error_response(
                400, self.error("you must provide a model parameter", "invalid_request_error", None, None)
            )
        try:
            base, fault = emu.fault(self.provider, model)
        except FaultSyntaxError as exc:
            return self.error_response(
                400, self.error(str(exc), "invalid_request_error", "invalid_fault", "model")
            )
        if fault.cut is not None and fault.status is None and parse_model(model)[1].status is not None:
            # an exhausted eNNNxK~cutN: the cut belonged to the in-band error, the stream is now whole
            fault = replace(fault, cut=None)
        if fault.reset:
            return Reset()
        if fault.hang:
            return await hang(request)
        if fault.kind is None and fault.status is not None and stream and fault.cut is not None:
            return base, fault
        if fault.kind is not None or fault.status is not None:
            await _delay(fault)
            if fault.kind == "context_length":
                body = self.context_error(base, param)
            elif fault.kind == "content_policy":
                body = self.policy_error(base)
            elif fault.echo:
                status = fault.status or 400
                type_ = "server_error" if status >= 500 else "invalid_request_error"
                body = self.error(echo_message(request.scope), type_)
            else:
                body = self.status_error(fault.status or 500, base, fault.retry_after)
            return self.error_response(fault.status or 400, body, retry_after=fault.retry_after)
        return base, fault


async def _delay(fault: Fault) -> None:
    if fault.latency or fault.slow:
        await asyncio.sleep(fault.latency + fault.slow)


async def before_answer(fault: Fault) -> None:
    """A non-streamed answer waits latency + slow before its first byte."""
    await _delay(fault)


def midstream(fault: Fault, events: list[bytes], error_event: bytes) -> tuple[Fault, list[bytes], bool]:
    """For a stream with ``eNNN~cutN``: the first N events, then the in-band error, then the end.

    Returns the fault to pace with, the events, and whether the normal terminator still applies.
    """
    if fault.status is None or fault.cut is None:
        return fault, events, True
    return replace(fault, cut=None, status=None), events[: fault.cut] + [error_event], False


def sse_response(events: AsyncIterator[bytes], dialect: Dialect, media_type: str = SSE) -> StreamingResponse:
    return StreamingResponse(_yielding(events), headers=dialect.headers(), media_type=media_type)


async def _yielding(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    # uvicorn's send() does not yield to the loop, so without this a client that hung up mid-stream
    # is only noticed after every remaining event was written into the dead socket
    async for event in events:
        yield event
        await asyncio.sleep(0)


def unix_now() -> int:
    return int(time.time())


def _num(value: float) -> str:
    return f"{value:g}"


async def read_json(request: Request, dialect: Dialect) -> dict | Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return dialect.error_response(
            400,
            dialect.error(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
                "JSON.)",
                "invalid_request_error",
            ),
        )
    if not isinstance(body, dict):
        return dialect.error_response(
            400, dialect.error("The request body must be a JSON object.", "invalid_request_error")
        )
    return body
