"""Google Gemini through google-genai's async client.

Web search is Google Search grounding (``google_search``): the Gemini API has no knob for its
size, so ``search_context_size`` is ignored and ``user_location`` too (a hint); it cannot filter
domains, so ``allowed_domains`` / ``blocked_domains`` are refused before any call. Citations are
the grounding chunks' web sources. Gemini gives function calls no id: the adapter makes one, and
answers a call by the function's name, which each tool turn carries.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError

from providers import exceptions as exc
from providers.adapters import sse
from providers.adapters.chat import (
    IMAGE_TYPES,
    PDF,
    ChatRequest,
    ChatResult,
    Chunk,
    Citation,
    Finish,
    Message,
    TextDelta,
    ToolCall,
    Usage,
    sign,
    signed_state,
    unique_citations,
)
from providers.adapters.errors import error_for_status, redact, retry_after_seconds, transport_error
from providers.adapters.options import ConfigSnapshot, ProviderOptions
from providers.exceptions import ProviderError

# What Google documents as the thought signature of a call the model did not make itself; the SDK
# sends bytes as URL-safe base64, so these bytes go on the wire as that very string.
UNSIGNED = base64.urlsafe_b64decode("skip_thought_signature_validator")

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
}


class Options(ProviderOptions):
    api_version: Literal["v1", "v1beta"] | None = None


# What a client may put in ``provider_options`` (see providers.adapters): GenerateContentConfig fields we do
# not map ourselves. Never ``http_options``: it sets the base URL and headers of the call.
PROVIDER_OPTIONS = {
    "chat": frozenset({
        "top_k", "response_mime_type", "response_schema", "response_json_schema", "safety_settings",
        "thinking_config", "media_resolution", "response_logprobs", "logprobs", "tool_config", "labels",
        "cached_content",
    }),
}


def _retry_delay(details: Any) -> float | None:
    """Google puts the wait in a RetryInfo detail ("retryDelay": "13s") rather than a header."""
    for detail in (details or {}).get("error", {}).get("details", []) if isinstance(details, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", delay or "")
        if match:
            return float(match[1])
    return None


def _thought_signature(call: ToolCall) -> bytes | None:
    state = signed_state(call.signature, "google")
    try:
        return base64.urlsafe_b64decode(state) if isinstance(state, str) and state else None
    except (ValueError, binascii.Error):
        return None


def _parts(message: Message) -> list[types.Part]:
    if message.role == "tool":
        answer = {"error": message.text} if message.is_error else {"result": message.text}
        return [types.Part.from_function_response(name=message.tool_name or "", response=answer)]
    parts = []
    if message.attachment is not None:
        parts.append(types.Part.from_bytes(data=message.attachment.data, mime_type=message.attachment.mime_type))
    if message.text or not (parts or message.tool_calls):
        parts.append(types.Part(text=message.text))
    signatures = [_thought_signature(c) for c in message.tool_calls]
    if signatures and signatures[0] is None:
        # Gemini 3 refuses a step whose first call comes back unsigned (HTTP 400). Calls it did not
        # sign (another provider's, in a fallback; a client's own history) carry the documented bypass.
        signatures[0] = UNSIGNED
    parts += [
        types.Part(function_call=types.FunctionCall(name=c.name, args=c.arguments), thought_signature=signature)
        for c, signature in zip(message.tool_calls, signatures, strict=True)
    ]
    return parts


def _contents(turns: tuple[Message, ...]) -> list[types.Content]:
    """Gemini wants the answers to one turn's calls together, in one user content."""
    contents: list[types.Content] = []
    previous = None
    for message in turns:
        if message.role == "tool" and previous is not None and previous.role == "tool":
            contents[-1].parts += _parts(message)
        else:
            contents.append(types.Content(role="model" if message.role == "model" else "user", parts=_parts(message)))
        previous = message
    return contents


def _tools(request: ChatRequest, provider_uid: str) -> list[types.Tool] | None:
    tools = []
    if request.tools:
        declarations = [
            types.FunctionDeclaration(name=t.name, description=t.description or None, parameters_json_schema=t.parameters)
            for t in request.tools
        ]
        tools.append(types.Tool(function_declarations=declarations))
    search = request.web_search
    if search is not None:
        if search.allowed_domains or search.blocked_domains:
            raise exc.Unsupported("Gemini's Google Search grounding cannot filter domains",
                                  provider_uid=provider_uid, model=request.model)
        tools.append(types.Tool(google_search=types.GoogleSearch()))
    return tools or None


class Adapter:
    accepted_mime_types = IMAGE_TYPES | {
        PDF, "image/heic", "image/heif", "text/plain",
        "audio/wav", "audio/mp3", "audio/mpeg", "audio/aac", "audio/ogg", "audio/flac",
    }

    def __init__(self, config: ConfigSnapshot) -> None:
        options = Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        # httpx's own transport, named: with aiohttp installed google-genai would switch to it, whose
        # errors map_error does not know and whose bodies the stream hook (sse) never sees. No proxy
        # variables, as for the other providers (transport.client).
        client_args = {"event_hooks": sse.event_hooks(), "transport": httpx2.AsyncHTTPTransport(),
                       "trust_env": False}
        http_options = types.HttpOptions(base_url=config.base_url or None, api_version=options.api_version,
                                         async_client_args=client_args)
        self.client = genai.Client(api_key=config.api_key, http_options=http_options).aio

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        context = {"provider_uid": self.uid, "model": model}
        if isinstance(error, genai_errors.APIError):
            message = redact(error.message or str(error.status or ""), self._secret)
            if error.code == 400 and "api key" in message.lower():
                return exc.AuthFailed(message, upstream_status=400, **context)
            headers = getattr(error.response, "headers", None)
            wait = retry_after_seconds(headers) or _retry_delay(error.details)
            return error_for_status(error.code, message, retry_after=wait, **context)
        if isinstance(error, json.JSONDecodeError | genai_errors.UnknownApiResponseError):
            return exc.Unavailable("the provider sent a malformed response", **context)
        return transport_error(error, **context)

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        gen = request.gen
        config = {
            "tools": _tools(request, self.uid),
            "system_instruction": request.system,
            "temperature": gen.temperature,
            "max_output_tokens": gen.max_tokens,
            "top_p": gen.top_p,
            "stop_sequences": list(gen.stop) or None,
            "seed": gen.seed,
            "presence_penalty": gen.presence_penalty,
            "frequency_penalty": gen.frequency_penalty,
        }
        config = {k: v for k, v in config.items() if v is not None}
        try:
            generate_config = types.GenerateContentConfig(**config, **gen.provider_options)
        except (TypeError, ValidationError) as error:
            raise exc.BadRequest(
                f"provider_options not accepted by google-genai: {error}".splitlines()[0],
                provider_uid=self.uid, model=request.model,
            ) from None
        return {"model": request.model, "contents": _contents(request.turns), "config": generate_config}

    def _blocked(self, response: Any, model: str) -> ProviderError | None:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            return exc.ContentPolicy(
                f"refused by content policy: prompt blocked ({feedback.block_reason})",
                provider_uid=self.uid, model=model,
            )
        return None

    @staticmethod
    def _text(response: Any) -> str:
        if not response.candidates or not response.candidates[0].content:
            return ""
        return "".join(part.text or "" for part in response.candidates[0].content.parts or [] if not part.thought)

    @staticmethod
    def _calls(response: Any) -> list[ToolCall]:
        if not response.candidates or not response.candidates[0].content:
            return []
        return [
            ToolCall(part.function_call.id or f"call_{uuid.uuid4().hex[:24]}", part.function_call.name or "",
                     dict(part.function_call.args or {}),
                     sign("google", base64.urlsafe_b64encode(part.thought_signature).decode())
                     if part.thought_signature else None)
            for part in response.candidates[0].content.parts or []
            if part.function_call
        ]

    @staticmethod
    def _citations(response: Any) -> list[Citation]:
        grounding = response.candidates[0].grounding_metadata if response.candidates else None
        chunks = grounding.grounding_chunks if grounding else None
        return [Citation(c.web.uri, c.web.title or "") for c in chunks or () if c.web and c.web.uri]

    @staticmethod
    def _usage(response: Any) -> Usage | None:
        meta = response.usage_metadata
        if meta is None:
            return None
        return Usage(meta.prompt_token_count or 0, meta.candidates_token_count or 0)

    @staticmethod
    def _finish(response: Any) -> str | None:
        if not response.candidates or response.candidates[0].finish_reason is None:
            return None
        reason = response.candidates[0].finish_reason
        name = reason.value if hasattr(reason, "value") else str(reason)
        return FINISH_REASONS.get(name, name.lower())

    async def chat(self, request: ChatRequest) -> ChatResult:
        response = await self.client.models.generate_content(**self._arguments(request))
        blocked = self._blocked(response, request.model)
        if blocked:
            raise blocked
        calls = self._calls(response)
        finish = self._finish(response) or "stop"
        return ChatResult(
            text=self._text(response),
            finish_reason="tool_calls" if calls and finish == "stop" else finish,  # Gemini says STOP after a call
            usage=self._usage(response) or Usage(),
            model=response.model_version or "",
            tool_calls=tuple(calls),
            citations=unique_citations(self._citations(response)),
        )

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await self.client.models.generate_content_stream(**self._arguments(request))
        finish = None
        usage = Usage()
        called = False
        try:
            async for response in stream:
                blocked = self._blocked(response, request.model)
                if blocked:
                    raise blocked
                text = self._text(response)
                if text:
                    yield TextDelta(text)
                for call in self._calls(response):  # a call arrives whole, in one chunk
                    called = True
                    yield call
                for citation in self._citations(response):  # grounding comes with the last chunk
                    yield citation
                usage = self._usage(response) or usage
                finish = self._finish(response) or finish
        finally:
            await stream.aclose()
        if finish is None:
            raise exc.Unavailable("the stream ended before the provider's finish reason")
        yield Finish("tool_calls" if called and finish == "stop" else finish, usage)
