"""Google Gemini through google-genai's async client."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError

from providers import exceptions as exc
from providers.adapters.base import (
    IMAGE_TYPES,
    PDF,
    TIMEOUT_ERRORS,
    TRANSPORT_ERRORS,
    ChatRequest,
    ChatResult,
    Chunk,
    ConfigSnapshot,
    Finish,
    ProviderOptions,
    TextDelta,
    Usage,
    error_for_status,
    redact,
    retry_after_seconds,
)
from providers.exceptions import ProviderError

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


def _retry_delay(details: Any) -> float | None:
    """Google puts the wait in a RetryInfo detail ("retryDelay": "13s") rather than a header."""
    for detail in (details or {}).get("error", {}).get("details", []) if isinstance(details, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", delay or "")
        if match:
            return float(match[1])
    return None


class Adapter:
    accepted_mime_types = IMAGE_TYPES | {
        PDF, "image/heic", "image/heif", "text/plain",
        "audio/wav", "audio/mp3", "audio/mpeg", "audio/aac", "audio/ogg", "audio/flac",
    }

    def __init__(self, config: ConfigSnapshot) -> None:
        options = Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        http_options = types.HttpOptions(base_url=config.base_url or None, api_version=options.api_version)
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
        if isinstance(error, TIMEOUT_ERRORS):
            return exc.Timeout("the provider did not answer in time", **context)
        if isinstance(error, TRANSPORT_ERRORS):
            return exc.Unavailable(f"connection to the provider failed ({type(error).__name__})", **context)
        if isinstance(error, json.JSONDecodeError | genai_errors.UnknownApiResponseError):
            return exc.Unavailable("the provider sent a malformed response", **context)
        return None

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        gen = request.gen
        contents = []
        for message in request.turns:
            parts = []
            if message.attachment is not None:
                parts.append(types.Part.from_bytes(data=message.attachment.data, mime_type=message.attachment.mime_type))
            if message.text or not parts:
                parts.append(types.Part(text=message.text))
            contents.append(types.Content(role="model" if message.role == "model" else "user", parts=parts))
        config = {
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
        return {"model": request.model, "contents": contents, "config": generate_config}

    def _blocked(self, response: Any, model: str) -> ProviderError | None:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            return exc.BadRequest(
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
        return ChatResult(
            text=self._text(response),
            finish_reason=self._finish(response) or "stop",
            usage=self._usage(response) or Usage(),
            model=response.model_version or "",
        )

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await self.client.models.generate_content_stream(**self._arguments(request))
        finish = None
        usage = Usage()
        try:
            async for response in stream:
                blocked = self._blocked(response, request.model)
                if blocked:
                    raise blocked
                text = self._text(response)
                if text:
                    yield TextDelta(text)
                usage = self._usage(response) or usage
                finish = self._finish(response) or finish
        finally:
            await stream.aclose()
        if finish is None:
            raise exc.Unavailable("the stream ended before the provider's finish reason")
        yield Finish(finish, usage)

    async def aclose(self) -> None:
        await self.client.aclose()
