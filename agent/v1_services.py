"""The OpenAI-compatible API: a Chat Completions request -> our chain -> the engine -> OpenAI's answer.

It runs the same path as ``/agent/run`` (``agent_run``; streams: ``agent_chunks``), so fallbacks,
hedging, deadlines, the circuit breaker and the key's rules behave the same; only the wire format
differs. One difference by design: OpenAI's stream format has no way to say "start over", so a
stream that breaks after its first byte ends with a ``data: {"error": ...}`` event (the openai SDK
raises ``APIError``) and never with ``data: [DONE]``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

from agent import routes, services
from agent.schemas import ChatIn, FallbackIn
from agent.v1_mapping import (
    DONE,
    Chunks,
    InvalidField,
    ModelNotFound,
    Translated,
    completion,
    error_body,
    event,
    served_model,
    translate,
)
from agent.v1_schemas import ChatCompletionIn
from providers import db, fallback, registry, requestlogs
from providers import exceptions as exc
from providers.adapter_cache import adapters
from providers.adapters.chat import Finish, TextDelta, ToolCall
from providers.fallback import attempts_line
from providers.models import Route
from providers.routes.cache import EntrySnapshot, check_direct
from providers.schemas import PROVIDER_UID

_UID = re.compile(PROVIDER_UID)


async def chain_for(model: str, key: Any, translated: Translated) -> ChatIn | FallbackIn:
    """The chain that the request's ``model`` names, with the request in it, validated as our API's;
    the key's route rules applied here (so the engine is called without them: agent/routes.py).

    A name without a slash is a chat route (the key must be allowed it); ``provider_uid/model`` is one
    provider config and a model (the rest after the first slash may hold slashes:
    ``openrouter/meta/llama-3``), for keys that may name provider configs. Unknown: ModelNotFound (404).
    Each entry gets the request's fields its provider accepts (``provider_options`` allow-lists).
    """
    provider_uid, slash, name = model.partition("/")
    if not slash:
        if len(model) > 64 or not _UID.match(model):
            raise ModelNotFound(model, "name a route, or a provider config and one of its models as provider_uid/model")

        async def entry(e: EntrySnapshot) -> dict[str, Any]:
            body = await _entry(e.provider_uid, e.model, translated)
            # The route entry's own settings first, the request's over them.
            return {**body, "gen_config": {**e.settings.get("gen_config", {}), **body["gen_config"]}}

        try:
            return await routes.route_chain(model, key, entry)
        except exc.NotFound as error:
            if isinstance(error, ModelNotFound):
                raise
            raise ModelNotFound(model, "there is no chat route of that name") from None
    check_direct(key)
    if not name or len(provider_uid) > 64 or not _UID.match(provider_uid):
        raise ModelNotFound(model, "name it as provider_uid/model")
    return translated.validated(ChatIn, await _entry(provider_uid, name, translated, model))


async def _entry(provider_uid: str, model: str, translated: Translated, asked: str | None = None) -> dict[str, Any]:
    try:
        snapshot, _adapter = await adapters.get(provider_uid)
    except exc.NotFound:
        raise ModelNotFound(asked or f"{provider_uid}/{model}", f"there is no provider config '{provider_uid}'") from None
    accepted = registry.accepted_options(snapshot.provider, "chat")
    return translated.entry(provider_uid, model, accepted)


async def models_for(key: Any) -> list[dict[str, Any]]:
    """The models ``GET /v1/models`` lists for ``key``: the enabled routes it may use (their names are
    what a client passes as ``model``; a speech or transcription route serves /v1/audio). Names of the
    form ``provider_uid/model`` are not listed: a provider config takes any model of its vendor."""
    allowed = getattr(key, "routes", frozenset())
    listed = Route.objects.filter(enabled=True).order_by("name")
    if allowed:
        listed = listed.filter(name__in=allowed)
    return [{"id": route.name, "object": "model", "created": int(route.created_at.timestamp()),
             "owned_by": f"qalby-route:{route.kind}"} for route in await db.run(list, listed)]


def _request(req: ChatCompletionIn) -> Translated:
    if req.stream_options is not None and not req.stream:
        raise InvalidField("stream_options: only allowed when stream is true", "stream_options")
    return translate(req)


async def chat_completion(req: ChatCompletionIn, key: Any, request_id: str) -> tuple[dict[str, Any], str]:
    """The whole answer as a ``chat.completion``, and the attempts in one line (a response header)."""
    payload = await chain_for(req.model, key, _request(req))
    created = int(time.time())
    answer = await services.agent_run(payload, request_id)  # the key's rules: applied by chain_for
    return completion(answer, f"chatcmpl-{request_id}", created), attempts_line(answer["attempts"])


async def chat_completion_stream(req: ChatCompletionIn, key: Any, request_id: str) -> tuple[AsyncIterator[bytes], str]:
    """The answer's server-sent events, and the attempts so far in one line (a response header).

    Fallback and hedging happen before this returns: if no attempt produces a first chunk, it raises
    (AllAttemptsFailed: a plain HTTP error, not a stream). Once it returns, the events end with
    ``data: [DONE]`` after a whole answer, or with one ``data: {"error": ...}`` event, never both.
    """
    payload = await chain_for(req.model, key, _request(req))
    if isinstance(payload, FallbackIn):  # a route's chain: this format cannot restart, say so in the record
        payload = payload.model_copy(update={"on_stream_failure": "error"})
    committed, run = await services.agent_chunks(payload)  # the key's rules: applied by chain_for
    # The serving attempt is still under way: "streaming" rather than the "cancelled" of a final record.
    now = [{**a.public(), "status": "streaming" if a.status == "pending" else a.final_status}
           for a in committed.attempts]
    chunks = Chunks(f"chatcmpl-{request_id}", int(time.time()),
                    served_model(committed.attempt.provider_uid, committed.attempt.model))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return _events(committed, run, chunks, include_usage), attempts_line(now)


async def _events(committed: fallback.Committed, run: Any, chunks: Chunks, include_usage: bool) -> AsyncIterator[bytes]:
    try:
        yield chunks.start()
        finish: Finish | None = None
        answer: list[str] = []
        try:
            async for chunk in committed:
                if isinstance(chunk, TextDelta):
                    answer.append(chunk.text)
                    yield chunks.text(chunk.text)
                elif isinstance(chunk, ToolCall):
                    yield chunks.tool_call(chunk.id, chunk.name, chunk.arguments, chunk.signature)
                elif isinstance(chunk, Finish):
                    finish = chunk
                # ToolResult, Citation: this API offers neither MCP servers nor web search.
        except fallback.StreamFailed as failure:
            run.record(failure.attempts)
            error = failure.error
            yield event(error_body(error.status, error.describe(), error_type=error.kind,
                                   attempts=[a.public() for a in failure.attempts]))
            return  # and no [DONE]: the answer is not whole
        requestlogs.note(answer="".join(answer))
        run.record(committed.attempts)
        yield chunks.finish(finish.finish_reason if finish else "stop")
        if include_usage:
            used = finish.usage if finish else None
            yield chunks.usage(used.input_tokens if used else 0, used.output_tokens if used else 0)
        yield DONE
    finally:
        await committed.aclose()
        await run.close()
