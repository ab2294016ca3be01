"""Anthropic: the Messages API through the official async SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
from pydantic import Field

from providers import exceptions as exc
from providers.adapters.base import (
    IMAGE_TYPES,
    PDF,
    ChatRequest,
    ChatResult,
    Chunk,
    ConfigSnapshot,
    Finish,
    Message,
    ProviderOptions,
    TextDelta,
    Usage,
    map_stainless_error,
)
from providers.exceptions import ProviderError

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class Options(ProviderOptions):
    default_max_tokens: int = Field(4096, gt=0, le=200_000, description="Sent when a request gives no max_tokens")


def _content(message: Message) -> Any:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}]
    blocks: list[dict[str, Any]] = []
    if message.attachment is not None:
        kind = "document" if message.attachment.mime_type == PDF else "image"
        source = {"type": "base64", "media_type": message.attachment.mime_type, "data": message.attachment.b64}
        blocks.append({"type": kind, "source": source})
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return message.text
    return blocks


class Adapter:
    accepted_mime_types = IMAGE_TYPES | {PDF}

    def __init__(self, config: ConfigSnapshot) -> None:
        self.options = Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        self.client = anthropic.AsyncAnthropic(
            api_key=config.api_key, base_url=config.base_url or None, max_retries=0, timeout=3600.0
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, anthropic, provider_uid=self.uid, model=model, secret=self._secret)

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        gen = request.gen
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": gen.max_tokens or self.options.default_max_tokens,
            "messages": [
                {"role": "assistant" if m.role == "model" else "user", "content": _content(m)} for m in request.turns
            ],
        }
        if request.system:
            kwargs["system"] = request.system
        if gen.stop:
            kwargs["stop_sequences"] = list(gen.stop)
        # The SDK no longer takes sampling parameters as arguments; the API still reads them from the body.
        body = {k: v for k, v in {"temperature": gen.temperature, "top_p": gen.top_p}.items() if v is not None}
        body.update(gen.provider_options)
        if body:
            kwargs["extra_body"] = body
        return kwargs

    async def chat(self, request: ChatRequest) -> ChatResult:
        message = await self.client.messages.create(**self._kwargs(request))
        text = "".join(block.text for block in message.content if block.type == "text")
        return ChatResult(
            text=text,
            finish_reason=FINISH_REASONS.get(message.stop_reason or "", message.stop_reason or "stop"),
            usage=Usage(message.usage.input_tokens or 0, message.usage.output_tokens or 0),
            model=message.model or "",
        )

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await self.client.messages.create(**self._kwargs(request), stream=True)
        input_tokens = output_tokens = 0
        stop_reason = None
        stopped = False
        try:
            async for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens or 0
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if event.delta.text:
                        yield TextDelta(event.delta.text)
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = event.usage.output_tokens or output_tokens
                    input_tokens = event.usage.input_tokens or input_tokens
                elif event.type == "message_stop":
                    stopped = True
        finally:
            await stream.close()
        if not stopped:
            raise exc.Unavailable("the stream ended before the provider's message_stop")
        yield Finish(FINISH_REASONS.get(stop_reason or "", stop_reason or "stop"), Usage(input_tokens, output_tokens))

    async def aclose(self) -> None:
        await self.client.close()
