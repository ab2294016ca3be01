"""OpenAI's Responses API: the wire shape of chat requests that use OpenAI's built-in web search.

Chat Completions has no web search for ordinary models, so a request with ``web_search`` goes
through ``client.responses.create`` instead, function tools and tool turns included.
Responses are not stored at OpenAI (``store: false``): the proxy sends the whole conversation each time.

``search_context_size`` (1-20) maps to OpenAI's three levels: 1-3 ``low``, 4-6 ``medium``,
7 and more ``high`` (unset: OpenAI's default, ``medium``). ``allowed_domains`` becomes
``filters.allowed_domains``, ``user_location`` an approximate location; OpenAI has no blocked
domains, so asking for them is refused before any call. Responses take no ``stop``, ``seed`` or
penalties: those fields are not sent, as for any provider that lacks a field.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from providers import exceptions as exc
from providers.adapters.chat import (
    ChatRequest,
    ChatResult,
    Chunk,
    Citation,
    Finish,
    Message,
    TextDelta,
    ToolCall,
    Usage,
    WebSearch,
    tool_arguments,
    unique_citations,
)
from providers.adapters.errors import redact


def context_level(size: int) -> str:
    return "low" if size <= 3 else "medium" if size <= 6 else "high"


def _search_tool(search: WebSearch, provider_uid: str, model: str) -> dict[str, Any]:
    if search.blocked_domains:
        raise exc.Unsupported("OpenAI web search cannot block domains (blocked_domains)",
                              provider_uid=provider_uid, model=model)
    tool: dict[str, Any] = {"type": "web_search"}
    if search.context_size is not None:
        tool["search_context_size"] = context_level(search.context_size)
    if search.allowed_domains:
        tool["filters"] = {"allowed_domains": list(search.allowed_domains)}
    if search.user_location:
        tool["user_location"] = {"type": "approximate", **search.user_location}
    return tool


def _items(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id, "output": message.text}]
    role = "assistant" if message.role == "model" else "user"
    items: list[dict[str, Any]] = []
    if message.attachment is not None:
        data_url = f"data:{message.attachment.mime_type};base64,{message.attachment.b64}"
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": message.text}] if message.text else []
        if message.attachment.mime_type.startswith("image/"):
            parts.append({"type": "input_image", "image_url": data_url, "detail": "auto"})
        else:
            parts.append({"type": "input_file", "filename": "document.pdf", "file_data": data_url})
        items.append({"role": role, "content": parts})
    elif message.text or not message.tool_calls:
        items.append({"role": role, "content": message.text})
    for call in message.tool_calls:
        items.append({"type": "function_call", "call_id": call.id, "name": call.name,
                      "arguments": json.dumps(call.arguments)})
    return items


def request_kwargs(request: ChatRequest, provider_uid: str) -> dict[str, Any]:
    gen = request.gen
    tools: list[dict[str, Any]] = [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
         "strict": False}
        for t in request.tools
    ]
    if request.web_search is not None:
        tools.append(_search_tool(request.web_search, provider_uid, request.model))
    kwargs: dict[str, Any] = {
        "model": request.model,
        "input": [item for m in request.turns for item in _items(m)],
        "store": False,
    }
    optional = {
        "instructions": request.system,
        "tools": tools or None,
        "temperature": gen.temperature,
        "max_output_tokens": gen.max_tokens,
        "top_p": gen.top_p,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if gen.provider_options:
        kwargs["extra_body"] = dict(gen.provider_options)
    return kwargs


def _finish(response: Any, calls: tuple | list) -> str:
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def _usage(response: Any) -> Usage:
    usage = response.usage
    return Usage(usage.input_tokens or 0, usage.output_tokens or 0) if usage else Usage()


def _citations(annotations: Any) -> list[Citation]:
    return [Citation(a.url, a.title or "") for a in annotations or () if a.type == "url_citation"]


def _call(item: Any, provider_uid: str, model: str) -> ToolCall:
    return ToolCall(item.call_id, item.name, tool_arguments(item.arguments, provider_uid=provider_uid, model=model))


def result_from_response(response: Any, provider_uid: str) -> ChatResult:
    texts, calls, citations = [], [], []
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "output_text":
                    texts.append(part.text)
                    citations += _citations(part.annotations)
        elif item.type == "function_call":
            calls.append(_call(item, provider_uid, response.model or ""))
    return ChatResult(
        text="".join(texts),
        finish_reason=_finish(response, calls),
        usage=_usage(response),
        model=response.model or "",
        tool_calls=tuple(calls),
        citations=unique_citations(citations),
    )


async def chunks_from_events(stream: Any, provider_uid: str, model: str, secret: str) -> AsyncIterator[Chunk]:
    """Deltas, citations and whole tool calls as they come, then one Finish from the terminal event.

    A stream without ``response.completed`` (or ``.incomplete``) is broken: Unavailable.
    """
    calls: list[ToolCall] = []
    async for event in stream:
        kind = event.type
        if kind == "response.output_text.delta":
            if event.delta:
                yield TextDelta(event.delta)
        elif kind == "response.output_text.annotation.added":
            annotation = event.annotation
            url = annotation.get("url") if isinstance(annotation, dict) else getattr(annotation, "url", None)
            if url:
                title = annotation.get("title") if isinstance(annotation, dict) else getattr(annotation, "title", "")
                yield Citation(url, title or "")
        elif kind == "response.output_item.done" and event.item.type == "function_call":
            calls.append(_call(event.item, provider_uid, model))
            yield calls[-1]
        elif kind in ("response.completed", "response.incomplete"):
            yield Finish(_finish(event.response, calls), _usage(event.response))
            return
        elif kind in ("error", "response.failed"):
            error = getattr(event, "message", None) or getattr(getattr(event.response, "error", None), "message", "")
            raise exc.Unavailable(f"the provider reported an error mid-stream: {redact(error or '', secret)}")
    raise exc.Unavailable("the stream ended before the provider's response.completed")
