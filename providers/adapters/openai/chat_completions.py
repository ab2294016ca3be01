"""OpenAI's Chat Completions wire shape, shared by the OpenAI and Groq adapters (Groq speaks it too).

Function tools, tool calls and tool results are mapped here; web search is each adapter's own
(OpenAI uses the Responses API, Groq its compound models), so it is not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from providers import exceptions as exc
from providers.adapters.chat import (
    ChatRequest,
    ChatResult,
    Citation,
    Finish,
    Message,
    TextDelta,
    ToolCall,
    Usage,
    tool_arguments,
    unique_citations,
)

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


def tool_param(tool) -> dict[str, Any]:
    function = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def request_kwargs(request: ChatRequest, *, max_tokens_field: str = "max_completion_tokens") -> dict[str, Any]:
    gen = request.gen
    kwargs: dict[str, Any] = {"model": request.model, "messages": [message_param(m) for m in request.messages]}
    if request.tools:
        kwargs["tools"] = [tool_param(t) for t in request.tools]
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


async def create(client: Any, endpoint: tuple[str, type, type], kwargs: dict[str, Any], *, stream: bool = False) -> Any:
    """``client.chat.completions.create(**kwargs)`` for an openai or groq client (``endpoint``: the SDK's
    path of chat completions, its ChatCompletion class and its ``AsyncStream[object]``),
    without the SDK's request-param transform: the body built above is already plain JSON, and walking
    the params' TypedDict annotations for it was ~15% of the CPU of a chat under load (#15). The SDK's
    documented ``client.post`` still does the rest: auth, base URL, headers, typed errors, the stream.
    ``extra_body`` (provider_options) is merged into the body, as ``create`` does.

    A stream's chunks stay the JSON objects they arrive as (``AsyncStream[object]``): building a
    ChatCompletionChunk model of each was a quarter of the CPU of a streamed chat (#15), and
    :func:`chunks_from_stream` reads a few fields of it."""
    body = dict(kwargs)
    body.update(body.pop("extra_body", None) or {})
    if stream:
        body["stream"] = True
    path, completion, chunks = endpoint
    return await client.post(path, body=body, cast_to=completion, stream=stream, stream_cls=chunks)


def _finish(reason: str | None, calls: tuple | list) -> str:
    finish = FINISH_REASONS.get(reason or "", reason or "stop")
    # Some compatible servers say "stop" after a tool call; the calls are what matters.
    return "tool_calls" if calls and finish == "stop" else finish


def result_from_completion(
    completion: Any, *, provider_uid: str, citations_of=lambda message: ()
) -> ChatResult:
    choice = completion.choices[0]
    usage = completion.usage
    calls = tuple(
        ToolCall(c.id, c.function.name, tool_arguments(c.function.arguments, provider_uid=provider_uid,
                                                       model=completion.model or ""))
        for c in choice.message.tool_calls or ()
    )
    return ChatResult(
        text=choice.message.content or "",
        finish_reason=_finish(choice.finish_reason, calls),
        usage=Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else Usage(),
        model=completion.model or "",
        tool_calls=calls,
        citations=unique_citations(citations_of(choice.message)),
    )


def _field(value: Any, name: str) -> Any:
    """``value[name]`` of a JSON object, None for anything else (a compatible server's odd chunk)."""
    return value.get(name) if isinstance(value, dict) else None


async def chunks_from_stream(
    stream: Any, *, provider_uid: str, model: str, usage_of=lambda chunk: _field(chunk, "usage"),
    citations_of=lambda delta: (),
) -> AsyncIterator[TextDelta | ToolCall | Citation | Finish]:
    """Deltas, whole tool calls, then one Finish; raises Unavailable when the stream ends without a finish reason.

    ``stream`` yields the chunks' JSON objects (see :func:`create`). Tool call arguments arrive in
    fragments keyed by index (id and name only in the first), so calls are sent whole once the finish
    reason is seen. Usage arrives after the finish reason (a last chunk with no choices), so Finish
    is sent when the stream ends.
    """
    finish_reason = None
    usage = Usage()
    calls: dict[int, dict[str, str]] = {}
    async for chunk in stream:
        reported = usage_of(chunk)
        if isinstance(reported, dict):
            usage = Usage(reported.get("prompt_tokens") or 0, reported.get("completion_tokens") or 0)
        for choice in _field(chunk, "choices") or ():
            delta = _field(choice, "delta")
            if text := _field(delta, "content"):
                yield TextDelta(text)
            for fragment in _field(delta, "tool_calls") or ():
                call = calls.setdefault(_field(fragment, "index") or 0, {"id": "", "name": "", "arguments": ""})
                call["id"] = _field(fragment, "id") or call["id"]
                if function := _field(fragment, "function"):
                    call["name"] = _field(function, "name") or call["name"]
                    call["arguments"] += _field(function, "arguments") or ""
            for citation in citations_of(delta) if delta else ():
                yield citation
            if reason := _field(choice, "finish_reason"):
                finish_reason = reason
    if finish_reason is None:
        raise exc.Unavailable("the stream ended before the provider's finish signal")
    for index in sorted(calls):
        call = calls[index]
        yield ToolCall(call["id"], call["name"], tool_arguments(call["arguments"], provider_uid=provider_uid, model=model))
    yield Finish(_finish(finish_reason, list(calls)), usage)
