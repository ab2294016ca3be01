"""Chat runs: client payload -> engine plans -> answer or NDJSON stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from agent import loop, routes
from agent.schemas import ChatIn, ChatRouteIn, FallbackIn, McpToolIn, WebSearchToolIn
from agent.tools import guard
from agent.tools.mcp import McpSpec, Toolbox, where
from providers import exceptions as exc
from providers import fallback, requestlogs
from providers.adapters.chat import (
    Attachment,
    Chat,
    ChatRequest,
    Citation,
    Finish,
    FunctionTool,
    GenConfig,
    Message,
    TextDelta,
    ToolCall,
    ToolResult,
    WebSearch,
)
from providers.planning import chain_of, plan_for, timeouts_for


def _message(item: ChatIn, m) -> Message:
    role = "model" if m.role == "assistant" else m.role
    if m.mime_type:
        return Message(role, m.caption or "", Attachment(m.mime_type, m.data))
    if role == "tool":
        return Message(role, m.content, tool_call_id=m.tool_call_id, tool_name=item.call_name(m.tool_call_id))
    return Message(role, m.content, tool_calls=tuple(ToolCall(c.id, c.name, c.arguments, c.signature) for c in m.tool_calls))


def _web_search(tool: WebSearchToolIn) -> WebSearch:
    options = tool.kwargs
    location = options.user_location.model_dump(exclude_none=True) if options.user_location else {}
    return WebSearch(tool.search_context_size, tuple(options.allowed_domains), tuple(options.blocked_domains), location)


def chat_request_of(item: ChatIn) -> ChatRequest:
    g = item.gen_config
    stop = (g.stop,) if isinstance(g.stop, str) else tuple(g.stop or ())
    gen = GenConfig(g.temperature, g.max_tokens, g.top_p, stop, g.seed, g.presence_penalty, g.frequency_penalty,
                    dict(g.provider_options))
    functions = tuple(FunctionTool(t.name, t.description, t.parameters) for t in item.tools if t.kind == "function")
    search = next((_web_search(t) for t in item.tools if t.kind == "web_search"), None)
    return ChatRequest(item.model, tuple(_message(item, m) for m in item.messages), gen, functions, search)


def _mcp_specs(item: ChatIn) -> list[McpSpec]:
    return [
        McpSpec(t.url, t.prefix, t.timeout, dict(t.kwargs.headers),
                tuple(t.kwargs.allowed_tools) if t.kwargs.allowed_tools is not None else None)
        for t in item.tools if isinstance(t, McpToolIn)
    ]


class _Run:
    """One API call: its chat requests as the agent loop runs them, their plans, their MCP servers."""

    def __init__(self, payload: ChatIn | FallbackIn) -> None:
        self.chain = chain_of(payload)
        self.chats = self.chain.entries
        self.payload = payload
        self.items = [loop.Item(c.provider_uid, chat_request_of(c)) for c in self.chats]
        self.plans: list[fallback.Plan] = []
        self.toolbox: Toolbox | None = None

    async def prepare(self) -> None:
        """Plans (an unknown provider is a 404 before anything runs), then the MCP servers, connected once."""
        payload = self.payload
        for chat, item in zip(self.chats, self.items, strict=True):
            self.plans.append(await plan_for(
                chat.provider_uid, chat.model, Chat, "chat", timeouts_for(payload, chat),
                call=lambda adapter, item=item: loop.run(adapter, item),
                stream=lambda adapter, item=item: loop.stream(adapter, item),
                provider_options=item.request.gen.provider_options,
            ))
        specs = [_mcp_specs(chat) for chat in self.chats]
        if not any(specs):
            return
        refusals = await guard.check_urls(list(dict.fromkeys(spec.url for item_specs in specs for spec in item_specs)))
        if refusals:
            raise exc.InvalidInput("; ".join(f"tools: mcp_streamable url {where(url)} refused: {why}"
                                             for url, why in refusals.items()))
        self.toolbox = Toolbox()
        try:
            await self.toolbox.open([spec for item_specs in specs for spec in item_specs])
            for index, (item, item_specs) in enumerate(zip(self.items, specs, strict=True)):
                taken = {tool.name for tool in item.request.tools}
                item.tools = self.toolbox.tools_for(item_specs, taken)
                self._within_tool_limit(index, item)
        except BaseException:
            await self.close()
            raise

    def _within_tool_limit(self, index: int, item: loop.Item) -> None:
        # Only now is it known how many tools the MCP servers bring (functions alone: checked by the schema).
        functions, listed = len(item.request.tools), len(item.tools.offered)
        limit = settings.QALBY_AGENT_MAX_TOOLS
        if functions + listed > limit:
            field = f"requests.{index}.tools" if isinstance(self.payload, FallbackIn) else "tools"
            raise exc.InvalidInput(
                f"{field}: {functions + listed} tool definitions ({functions} functions, {listed} from MCP servers), "
                f"more than QALBY_AGENT_MAX_TOOLS ({limit}); name the tools wanted in kwargs.allowed_tools")

    def restart_refusal(self, failure: fallback.StreamFailed) -> str | None:
        """None when a broken stream may restart from the chain's next entry; else why not, for its
        error line ("" when the answer is simply that this request does not restart)."""
        payload = self.payload
        if not isinstance(payload, FallbackIn) or not failure.committed.can_restart:
            return ""
        if (payload.on_stream_failure or settings.QALBY_STREAM_FAILURE) != "restart":
            return ""
        ran = self.items[failure.committed.attempt.index].ran
        if ran and not payload.restart_after_tools:
            return (f" (not restarted: this attempt already ran {', '.join(ran)}, which may have had effects; "
                    "set restart_after_tools to restart anyway)")
        return None

    def record(self, attempts: list[fallback.AttemptRecord]) -> None:
        """Each attempt's record says which tools its loop ran."""
        for attempt in attempts:
            attempt.tools = list(self.items[attempt.index].ran)

    async def close(self) -> None:
        if self.toolbox is not None:
            await self.toolbox.close()


def _usage(usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


def _note_prompt(payload: ChatIn | FallbackIn) -> None:
    """With content logging on, the conversation of the first request as text (attachments by type and size)."""
    if not settings.QALBY_LOG_CONTENT:
        return
    first = payload if isinstance(payload, ChatIn) else payload.requests[0]
    lines = [f"{m.role}: " + (f"<{m.mime_type}, {len(m.data)} bytes> {m.caption or ''}" if m.mime_type else m.content)
             for m in first.messages]
    requestlogs.note(prompt="\n".join(lines))


def _result(call: ToolCall | None, result: ToolResult) -> dict[str, Any]:
    return {"id": call.id if call else None, "name": result.name, "arguments": call.arguments if call else {},
            "content": result.content, "is_error": result.is_error}


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "signature": call.signature}


async def _prepared(payload: ChatIn | FallbackIn | ChatRouteIn, principal: Any) -> _Run:
    """The run of a request: its chain (a route's expanded, the key's rules applied), plans and MCP servers."""
    payload = await routes.resolve(payload, principal)
    run = _Run(payload)
    await run.prepare()
    _note_prompt(payload)
    return run


async def agent_run(payload: ChatIn | FallbackIn | ChatRouteIn, request_id: str, principal: Any = None) -> dict[str, Any]:
    """``principal``: the calling client key, whose route rules apply (agent/routes.py)."""
    run = await _prepared(payload, principal)
    try:
        outcome = await fallback.run(run.plans, run.chain.policy)
    except exc.AllAttemptsFailed as failed:
        run.record(failed.attempts)
        raise
    finally:
        await run.close()
    run.record(outcome.attempts)
    answer: loop.Answer = outcome.result
    requestlogs.note(answer=answer.text)
    return {
        "request_id": request_id,
        "output": answer.text,
        "provider_uid": outcome.attempt.provider_uid,
        "model": outcome.attempt.model,
        "finish_reason": answer.finish_reason,
        "usage": _usage(answer.usage),
        "tool_calls": [_call(c) for c in answer.tool_calls],
        "tool_results": [_result(call, result) for call, result in answer.tool_results],
        "citations": [{"url": c.url, "title": c.title} for c in answer.citations],
        "attempts": [a.public() for a in outcome.attempts],
    }


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def agent_stream(payload: ChatIn | FallbackIn | ChatRouteIn, request_id: str,
                       principal: Any = None) -> AsyncIterator[bytes]:
    """Opens the stream (AllAttemptsFailed if no provider produces a first chunk), then its NDJSON lines.

    The last line is always ``done`` or ``error``: a stream is never cut silently.
    """
    committed, run = await agent_chunks(payload, principal)
    return _ndjson(committed, request_id, run)


def _chunk_line(chunk) -> dict[str, Any]:
    if isinstance(chunk, TextDelta):
        return {"type": "delta", "text": chunk.text}
    if isinstance(chunk, ToolCall):
        return {"type": "tool_call", **_call(chunk)}
    if isinstance(chunk, ToolResult):
        return {"type": "tool_result", "id": chunk.call_id, "name": chunk.name, "content": chunk.content,
                "is_error": chunk.is_error}
    if isinstance(chunk, Citation):
        return {"type": "citation", "url": chunk.url, "title": chunk.title}
    raise TypeError(f"not a stream chunk: {type(chunk).__name__}")


async def _ndjson(committed: fallback.Committed, request_id: str, run: _Run) -> AsyncIterator[bytes]:
    try:
        yield _line({"type": "start", "request_id": request_id, **_served(committed)})
        while True:
            try:
                async for line in _answer(committed, run):
                    yield line
                return
            except fallback.StreamFailed as failure:
                refusal = run.restart_refusal(failure)
                if refusal is None:
                    try:
                        committed = await fallback.restart_stream(failure)
                    except exc.AllAttemptsFailed as failed:
                        run.record(failed.attempts)
                        yield _line({"type": "error", "detail": failed.detail,
                                     "attempts": [a.public() for a in failed.attempts]})
                        return
                    requestlogs.note(error=f"restarted after: {failure.error.describe()}")
                    yield _line({"type": "restart", "reason": failure.error.describe(), **_served(committed),
                                 "attempts": [a.public() for a in committed.attempts]})
                    continue
                run.record(failure.attempts)
                yield _line({"type": "error", "detail": failure.error.describe() + refusal,
                             "attempts": [a.public() for a in failure.attempts]})
                return
    finally:
        await committed.aclose()
        await run.close()


def _served(committed: fallback.Committed) -> dict[str, str]:
    return {"provider_uid": committed.attempt.provider_uid, "model": committed.attempt.model}


async def _answer(committed: fallback.Committed, run: _Run) -> AsyncIterator[bytes]:
    """One provider's answer as lines, ending with ``done``; StreamFailed if it breaks."""
    finish = None
    answer: list[str] = []
    calls: dict[str, ToolCall] = {}  # calls without a result yet: at the end, the client's to run
    async for chunk in committed:
        if isinstance(chunk, Finish):
            finish = chunk
            continue
        if isinstance(chunk, TextDelta):
            answer.append(chunk.text)
        elif isinstance(chunk, ToolCall):
            calls[chunk.id] = chunk
        elif isinstance(chunk, ToolResult) and chunk.call_id:
            calls.pop(chunk.call_id, None)
        yield _line(_chunk_line(chunk))
    requestlogs.note(answer="".join(answer))
    run.record(committed.attempts)
    finish_reason = finish.finish_reason if finish else "stop"
    yield _line({
        "type": "done", **_served(committed),
        "finish_reason": finish_reason,
        "usage": _usage(finish.usage) if finish else {"input_tokens": 0, "output_tokens": 0},
        **({"tool_calls": [_call(c) for c in calls.values()]} if finish_reason == "tool_calls" else {}),
        "attempts": [a.public() for a in committed.attempts],
    })


async def agent_chunks(payload: ChatIn | FallbackIn | ChatRouteIn,
                       principal: Any = None) -> tuple[fallback.Committed, _Run]:
    """For an endpoint that streams in a wire format of its own (agent/v1_services.py): the stream,
    opened as ``agent_stream`` opens it (AllAttemptsFailed if no provider produces a first chunk), and
    its run. The caller iterates the Committed (TextDelta, ToolCall, ToolResult, Citation, Finish;
    StreamFailed if it breaks), calls ``run.record`` with the attempts once it ends or breaks, and
    closes both (``committed.aclose()``, ``run.close()``) whatever happens."""
    run = await _prepared(payload, principal)
    try:
        committed = await fallback.open_stream(run.plans, run.chain.policy)
    except BaseException as error:
        if isinstance(error, exc.AllAttemptsFailed):
            run.record(error.attempts)
        await run.close()
        raise
    return committed, run
