"""Anthropic: the Messages API through the official async SDK.

Web search is Anthropic's server tool (``web_search_20250305``): ``search_context_size`` is its
``max_uses`` (how many searches the model may run; unset: no limit), ``allowed_domains``,
``blocked_domains`` and ``user_location`` are passed as they are. Citations are the text blocks'
``web_search_result_location`` entries.

Extended thinking (``provider_options: {"thinking": {...}}``): a turn that calls tools must come
back with its thinking blocks first, unchanged, or the API refuses the request that carries the
tool results. The blocks travel in the first call's signature (chat.sign), through the agent loop
and through clients, and are put back in front of the turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anthropic
from pydantic import Field

from providers import exceptions as exc
from providers.adapters import sse, transport
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
    tool_arguments,
    unique_citations,
)
from providers.adapters.errors import map_stainless_error
from providers.adapters.options import ConfigSnapshot, ProviderOptions
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


# What a client may put in ``provider_options``, by capability (see providers.adapters).
PROVIDER_OPTIONS = {
    "chat": frozenset({"thinking", "top_k", "metadata", "tool_choice", "service_tier"}),
}


def _tool_result(message: Message) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
    if message.is_error:
        block["is_error"] = True
    return block


def _messages(turns: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Anthropic wants every result of one model turn's calls together, in the next user message."""
    out: list[dict[str, Any]] = []
    for m in turns:
        if m.role != "tool":
            out.append({"role": "assistant" if m.role == "model" else "user", "content": _content(m)})
        elif out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) and all(
            block["type"] == "tool_result" for block in out[-1]["content"]
        ):
            out[-1]["content"].append(_tool_result(m))
        else:
            out.append({"role": "user", "content": [_tool_result(m)]})
    return out


def _search_tool(request: ChatRequest) -> dict[str, Any]:
    search = request.web_search
    tool: dict[str, Any] = {"type": "web_search_20250305", "name": "web_search"}
    if search.context_size is not None:
        tool["max_uses"] = search.context_size
    if search.allowed_domains:
        tool["allowed_domains"] = list(search.allowed_domains)
    if search.blocked_domains:
        tool["blocked_domains"] = list(search.blocked_domains)
    if search.user_location:
        tool["user_location"] = {"type": "approximate", **search.user_location}
    return tool


def _citations(citations: Any) -> list[Citation]:
    return [Citation(c.url, c.title or "") for c in citations or () if getattr(c, "url", None)]


THINKING = ("thinking", "redacted_thinking")


def _thinking(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """The thinking blocks a turn's first call carries, if they are Claude's."""
    state = signed_state(calls[0].signature, "anthropic") if calls else None
    if not isinstance(state, list):
        return []
    return [b for b in state if isinstance(b, dict) and b.get("type") in THINKING]


def _signed(calls: list[ToolCall], thinking: list[dict[str, Any]]) -> list[ToolCall]:
    if calls and thinking:
        calls[0] = replace(calls[0], signature=sign("anthropic", thinking))
    return calls


def _content(message: Message) -> Any:
    blocks: list[dict[str, Any]] = _thinking(message.tool_calls)
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
            api_key=config.api_key, base_url=config.base_url or None, max_retries=0, timeout=3600.0,
            http_client=transport.client(anthropic.DefaultAsyncHttpxClient, event_hooks=sse.event_hooks()),
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, anthropic, provider_uid=self.uid, model=model, secret=self._secret)

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        gen = request.gen
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": gen.max_tokens or self.options.default_max_tokens,
            "messages": _messages(request.turns),
        }
        tools: list[dict[str, Any]] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
        ]
        if request.web_search is not None:
            tools.append(_search_tool(request))
        if tools:
            kwargs["tools"] = tools
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
        texts, calls, citations, thinking = [], [], [], []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
                citations += _citations(block.citations)
            elif block.type == "tool_use":  # server tools (web search) are server_tool_use: not ours to run
                calls.append(ToolCall(block.id, block.name, tool_arguments(
                    block.input, provider_uid=self.uid, model=request.model)))
            elif block.type in THINKING:
                thinking.append(block.to_dict())
        calls = _signed(calls, thinking)
        return ChatResult(
            text="".join(texts),
            finish_reason=FINISH_REASONS.get(message.stop_reason or "", message.stop_reason or "stop"),
            usage=Usage(message.usage.input_tokens or 0, message.usage.output_tokens or 0),
            model=message.model or "",
            tool_calls=tuple(calls),
            citations=unique_citations(citations),
        )

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await self.client.messages.create(**self._kwargs(request), stream=True)
        input_tokens = output_tokens = 0
        stop_reason = None
        stopped = False
        calls: dict[int, list] = {}  # block index -> [id, name, JSON so far]: inputs stream in fragments
        thinking: dict[int, dict[str, Any]] = {}  # block index -> the thinking block as it streams in
        called = False
        try:
            async for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens or 0
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    calls[event.index] = [event.content_block.id, event.content_block.name, ""]
                elif event.type == "content_block_start" and event.content_block.type in THINKING:
                    thinking[event.index] = event.content_block.to_dict()
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        yield TextDelta(delta.text)
                    elif delta.type == "input_json_delta" and event.index in calls:
                        calls[event.index][2] += delta.partial_json or ""
                    elif delta.type == "citations_delta":
                        for citation in _citations([delta.citation]):
                            yield citation
                    elif delta.type == "thinking_delta" and event.index in thinking:
                        thinking[event.index]["thinking"] += delta.thinking
                    elif delta.type == "signature_delta" and event.index in thinking:
                        thinking[event.index]["signature"] = delta.signature
                elif event.type == "content_block_stop" and event.index in calls:
                    call_id, name, raw = calls.pop(event.index)
                    call = ToolCall(call_id, name, tool_arguments(raw, provider_uid=self.uid, model=request.model))
                    # Thinking comes before the calls it leads to; the turn's first call carries it all.
                    yield call if called else _signed([call], list(thinking.values()))[0]
                    called = True
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
