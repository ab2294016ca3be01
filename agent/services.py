"""Chat runs: client payload -> engine plans -> answer or NDJSON stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agent.schemas import ChatIn, FallbackIn
from providers import fallback
from providers.adapters.base import (
    Attachment,
    Chat,
    ChatRequest,
    Finish,
    GenConfig,
    Message,
    TextDelta,
    require_mime_types,
)
from providers.planning import Timeouts, plan_for


def chat_request_of(item: ChatIn) -> ChatRequest:
    messages = []
    for m in item.messages:
        role = "model" if m.role == "assistant" else m.role
        if m.mime_type:
            messages.append(Message(role, m.caption or "", Attachment(m.mime_type, m.data)))
        else:
            messages.append(Message(role, m.content))
    g = item.gen_config
    stop = (g.stop,) if isinstance(g.stop, str) else tuple(g.stop or ())
    gen = GenConfig(g.temperature, g.max_tokens, g.top_p, stop, g.seed, g.presence_penalty, g.frequency_penalty,
                    dict(g.provider_options))
    return ChatRequest(item.model, tuple(messages), gen)


async def _chat(adapter: Chat, uid: str, request: ChatRequest):
    require_mime_types(adapter, request, uid)
    return await adapter.chat(request)


async def _chat_stream(adapter: Chat, uid: str, request: ChatRequest):
    require_mime_types(adapter, request, uid)
    async for chunk in adapter.chat_stream(request):
        yield chunk


async def _plans(payload: ChatIn | FallbackIn) -> tuple[list[fallback.Plan], str, float | None]:
    items, strategy, overall = ([payload], "sequential", None) if isinstance(payload, ChatIn) else (
        payload.requests, payload.strategy, payload.timeout_total)
    attempt_timeout = getattr(payload, "timeout_per_request", None)
    plans = []
    for item in items:
        request = chat_request_of(item)
        timeouts = Timeouts(
            attempt=attempt_timeout,
            first_chunk=item.first_chunk_timeout or getattr(payload, "first_chunk_timeout", None),
            idle=item.idle_timeout or getattr(payload, "idle_timeout", None),
        )
        plans.append(
            await plan_for(
                item.provider_uid, item.model, Chat, "chat", timeouts,
                call=lambda adapter, uid=item.provider_uid, r=request: _chat(adapter, uid, r),
                stream=lambda adapter, uid=item.provider_uid, r=request: _chat_stream(adapter, uid, r),
            )
        )
    return plans, strategy, overall


def _usage(usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


async def agent_run(payload: ChatIn | FallbackIn, request_id: str) -> dict[str, Any]:
    plans, strategy, overall = await _plans(payload)
    outcome = await fallback.run(plans, strategy, overall)
    result = outcome.result
    return {
        "request_id": request_id,
        "output": result.text,
        "provider_uid": outcome.attempt.provider_uid,
        "model": outcome.attempt.model,
        "finish_reason": result.finish_reason,
        "usage": _usage(result.usage),
        "attempts": [a.public() for a in outcome.attempts],
    }


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def agent_stream(payload: ChatIn | FallbackIn, request_id: str) -> AsyncIterator[bytes]:
    """Opens the stream (AllAttemptsFailed if no provider produces a first chunk), then its NDJSON lines.

    The last line is always ``done`` or ``error``: a stream is never cut silently.
    """
    plans, strategy, overall = await _plans(payload)
    committed = await fallback.open_stream(plans, strategy, overall)
    return _ndjson(committed, request_id)


async def _ndjson(committed: fallback.Committed, request_id: str) -> AsyncIterator[bytes]:
    served = {"provider_uid": committed.attempt.provider_uid, "model": committed.attempt.model}
    try:
        yield _line({"type": "start", "request_id": request_id, **served})
        finish = None
        async for chunk in committed:
            if isinstance(chunk, TextDelta):
                yield _line({"type": "delta", "text": chunk.text})
            elif isinstance(chunk, Finish):
                finish = chunk
        yield _line({
            "type": "done", **served,
            "finish_reason": finish.finish_reason if finish else "stop",
            "usage": _usage(finish.usage) if finish else {"input_tokens": 0, "output_tokens": 0},
            "attempts": [a.public() for a in committed.attempts],
        })
    except fallback.StreamFailed as failure:
        yield _line({
            "type": "error", "detail": failure.error.describe(),
            "attempts": [a.public() for a in failure.attempts],
        })
    finally:
        await committed.aclose()
