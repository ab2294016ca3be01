"""The Chat Completions wire shape, shared by the OpenAI and Groq adapters (Groq speaks it too)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from providers import exceptions as exc
from providers.adapters.base import ChatRequest, ChatResult, Finish, Message, TextDelta, Usage

FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
                  "content_filter": "content_filter"}


def message_param(message: Message) -> dict[str, Any]:
    role = {"model": "assistant"}.get(message.role, message.role)
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.text or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in message.tool_calls
            ],
        }
    if message.attachment is None:
        return {"role": role, "content": message.text}
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    data_url = f"data:{message.attachment.mime_type};base64,{message.attachment.b64}"
    if message.attachment.mime_type.startswith("image/"):
        parts.append({"type": "image_url", "image_url": {"url": data_url}})
    else:
        parts.append({"type": "file", "file": {"filename": "document.pdf", "file_data": data_url}})
    return {"role": role, "content": parts}


def request_kwargs(request: ChatRequest, *, max_tokens_field: str = "max_completion_tokens") -> dict[str, Any]:
    gen = request.gen
    kwargs: dict[str, Any] = {"model": request.model, "messages": [message_param(m) for m in request.messages]}
    optional = {
        "temperature": gen.temperature,
        max_tokens_field: gen.max_tokens,
        "top_p": gen.top_p,
        "stop": list(gen.stop) or None,
        "seed": gen.seed,
        "presence_penalty": gen.presence_penalty,
        "frequency_penalty": gen.frequency_penalty,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if gen.provider_options:
        kwargs["extra_body"] = dict(gen.provider_options)
    return kwargs


def result_from_completion(completion: Any) -> ChatResult:
    choice = completion.choices[0]
    usage = completion.usage
    return ChatResult(
        text=choice.message.content or "",
        finish_reason=FINISH_REASONS.get(choice.finish_reason or "", choice.finish_reason or "stop"),
        usage=Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else Usage(),
        model=completion.model or "",
    )


async def chunks_from_stream(stream: Any, *, usage_of=lambda chunk: chunk.usage) -> AsyncIterator[TextDelta | Finish]:
    """Deltas, then one Finish; raises Unavailable when the stream ends without a finish reason.

    Usage arrives after the finish reason (a last chunk with no choices), so Finish is sent when
    the stream ends, not when the finish reason is seen.
    """
    finish_reason = None
    usage = Usage()
    async for chunk in stream:
        reported = usage_of(chunk)
        if reported is not None:
            usage = Usage(reported.prompt_tokens or 0, reported.completion_tokens or 0)
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                yield TextDelta(choice.delta.content)
            if choice.finish_reason:
                finish_reason = FINISH_REASONS.get(choice.finish_reason, choice.finish_reason)
    if finish_reason is None:
        raise exc.Unavailable("the stream ended before the provider's finish signal")
    yield Finish(finish_reason, usage)
