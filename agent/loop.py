"""The agent loop: the model calls MCP tools, the proxy runs them and gives the results back, until
the model answers, calls a function the client must run, or reaches QALBY_AGENT_MAX_STEPS.

It runs inside one engine attempt (a plan's call or stream), so the attempt's deadlines and
cancellation bound the whole loop, and a provider that fails mid-loop hands over to the next
request of a fallback chain, which starts its own loop.

Streams: the engine commits to a provider on the first chunk it sees, so the loop holds back
tool calls, tool results and citations until the first text arrives (or the loop ends). Until
then a failure still falls over to the next request, and the client never sees a tool line of
an attempt that was abandoned. After it, lines are sent as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from django.conf import settings

from agent.tools.mcp import ItemTools
from providers import exceptions as exc
from providers.adapters.chat import (
    Chat,
    ChatRequest,
    Citation,
    Finish,
    Message,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
    require_mime_types,
    unique_citations,
)

STEP_SEPARATOR = "\n\n"  # between the texts of two model turns


@dataclass
class Item:
    """One chat request of a payload, as the loop runs it."""

    provider_uid: str
    request: ChatRequest
    tools: ItemTools = field(default_factory=ItemTools)
    ran: list[str] = field(default_factory=list)  # names of the tools run, for the attempt record

    def prepared(self, adapter: Chat) -> ChatRequest:
        require_mime_types(adapter, self.request, self.provider_uid)
        if not self.tools.offered:
            return self.request
        return replace(self.request, tools=self.request.tools + self.tools.offered)


@dataclass
class Answer:
    text: str
    finish_reason: str
    usage: Usage
    model: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # calls for the client to run (function tools)
    citations: tuple[Citation, ...] = ()
    tool_results: list[tuple[ToolCall | None, ToolResult]] = field(default_factory=list)  # what the proxy ran


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens)


async def _run_tools(item: Item, calls: list[ToolCall]) -> list[ToolResult]:
    # Recorded before they run: a call cut short by a deadline may still have done its work upstream.
    item.ran.extend(call.name for call in calls)
    # Calls of one turn do not depend on each other (the model made them together), so they run together.
    return list(await asyncio.gather(*(item.tools.run(call) for call in calls)))


def _continued(messages: list[Message], text: str, calls: list[ToolCall], ours: list[ToolCall],
               results: list[ToolResult]) -> None:
    messages.append(Message("model", text, tool_calls=tuple(calls)))
    for call, result in zip(ours, results, strict=True):
        messages.append(Message("tool", result.content, tool_call_id=call.id, tool_name=call.name,
                                is_error=result.is_error))


async def run(adapter: Chat, item: Item) -> Answer:
    request = item.prepared(adapter)
    messages = list(request.messages)
    texts: list[str] = []
    citations: list[Citation] = []
    records: list[tuple[ToolCall | None, ToolResult]] = [(None, error) for error in item.tools.errors]
    usage = Usage()
    for step in range(settings.QALBY_AGENT_MAX_STEPS):
        result = await adapter.chat(replace(request, messages=tuple(messages)))
        usage = _add(usage, result.usage)
        if result.text:
            texts.append(result.text)
        citations += result.citations
        ours = [c for c in result.tool_calls if item.tools.owns(c.name)]
        theirs = tuple(c for c in result.tool_calls if not item.tools.owns(c.name))
        answer = Answer(STEP_SEPARATOR.join(texts), result.finish_reason, usage, result.model, theirs,
                        unique_citations(citations), records)
        if not ours:
            return answer
        if step + 1 == settings.QALBY_AGENT_MAX_STEPS:
            answer.finish_reason, answer.tool_calls = "max_steps", ()
            return answer
        results = await _run_tools(item, ours)
        records += zip(ours, results, strict=True)
        if theirs:  # the client runs its own functions; the proxy's calls of this turn are done
            answer.finish_reason = "tool_calls"
            return answer
        _continued(messages, result.text, list(result.tool_calls), ours, results)
    raise AssertionError("unreachable: the last step returns")


async def stream(adapter: Chat, item: Item) -> AsyncIterator[TextDelta | ToolCall | ToolResult | Citation | Finish]:
    request = item.prepared(adapter)
    messages = list(request.messages)
    held: list = list(item.tools.errors)  # chunks not yet sent: nothing is, before the first text
    committed = spoke = False
    cited: set[str] = set()
    usage = Usage()
    for step in range(settings.QALBY_AGENT_MAX_STEPS):
        calls: list[ToolCall] = []
        texts: list[str] = []
        finish = None
        async for chunk in adapter.chat_stream(replace(request, messages=tuple(messages))):
            if isinstance(chunk, Finish):
                finish = chunk
                continue
            if isinstance(chunk, ToolCall):
                calls.append(chunk)
            elif isinstance(chunk, Citation):
                if chunk.url in cited:
                    continue
                cited.add(chunk.url)
            elif isinstance(chunk, TextDelta):
                if spoke and not texts:
                    held.append(TextDelta(STEP_SEPARATOR))
                texts.append(chunk.text)
                committed = spoke = True
            held.append(chunk)
            if committed:
                for ready in held:
                    yield ready
                held.clear()
        if finish is None:  # adapters end with a Finish or raise; a plain end is a broken stream all the same
            raise exc.Unavailable("the stream ended before the provider's finish signal")
        usage = _add(usage, finish.usage)
        ours = [c for c in calls if item.tools.owns(c.name)]
        theirs = [c for c in calls if not item.tools.owns(c.name)]
        if not ours:
            held.append(Finish(finish.finish_reason, usage))
            break
        if step + 1 == settings.QALBY_AGENT_MAX_STEPS:
            held.append(Finish("max_steps", usage))
            break
        results = await _run_tools(item, ours)
        held += results
        if theirs:
            held.append(Finish("tool_calls", usage))
            break
        _continued(messages, "".join(texts), calls, ours, results)
        if committed:
            for ready in held:
                yield ready
            held.clear()
    for ready in held:
        yield ready
