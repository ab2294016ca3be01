"""Groq through the official async SDK: OpenAI-compatible chat, and transcription (whisper-large-v3,
whisper-large-v3-turbo) through OpenAI's transcription API, with OpenAI's request and result shapes.

Web search: Groq's compound models (``groq/compound``, ``groq/compound-mini``) search on their
own; a ``web_search`` tool on one of them sends ``search_settings`` (``allowed_domains`` ->
``include_domains``, ``blocked_domains`` -> ``exclude_domains``, ``user_location.country`` ->
``country``; ``search_context_size`` has no Groq equivalent and is ignored), and the sources come
back in ``executed_tools``. Any other Groq model cannot search: refused before any call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import groq
from groq.types.chat import ChatCompletion

from providers import exceptions as exc
from providers.adapters import sse, transport
from providers.adapters.audio import TranscriptionRequest, TranscriptionResult
from providers.adapters.chat import IMAGE_TYPES, ChatRequest, ChatResult, Chunk, Citation
from providers.adapters.errors import map_stainless_error
from providers.adapters.openai import chat_completions
from providers.adapters.openai.audio import whisper_kwargs, whisper_result
from providers.adapters.options import ConfigSnapshot, ProviderOptions
from providers.exceptions import ProviderError


class Options(ProviderOptions):
    pass


# What a client may put in ``provider_options``, by capability (see providers.adapters).
PROVIDER_OPTIONS = {
    "chat": frozenset({
        "reasoning_effort", "reasoning_format", "include_reasoning", "response_format", "service_tier",
        "user", "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs", "metadata",
    }),
    "transcription": frozenset(),
}


def _usage(chunk: dict):
    # Groq reports stream usage in its own extension on the last chunk.
    extension = chunk.get("x_groq") if isinstance(chunk, dict) else None
    return (extension.get("usage") if isinstance(extension, dict) else None) or chunk.get("usage")


def _searches(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith("compound")


def _citations(message_or_delta) -> list[Citation]:
    """Sources of a compound model's searches (``executed_tools``), in a message or a stream delta."""
    found = []
    for tool in getattr(message_or_delta, "executed_tools", None) or ():
        results = tool.search_results.results if tool.search_results else None
        found += [Citation(r.url, r.title or "") for r in results or () if r.url]
    return found


def _stream_citations(delta: dict) -> list[Citation]:
    """:func:`_citations` of a stream delta, which stays JSON (chat_completions.create)."""
    found = []
    for tool in delta.get("executed_tools") or ():
        results = ((tool or {}).get("search_results") or {}).get("results") or ()
        found += [Citation(r["url"], r.get("title") or "") for r in results if isinstance(r, dict) and r.get("url")]
    return found


# The groq SDK's base URL is the bare host: its paths carry /openai/v1.
CHAT_COMPLETIONS = ("/openai/v1/chat/completions", ChatCompletion, groq.AsyncStream[object])


class Adapter:
    accepted_mime_types = IMAGE_TYPES  # vision models take images; no documents

    def __init__(self, config: ConfigSnapshot) -> None:
        Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        self.client = groq.AsyncGroq(
            api_key=config.api_key,
            base_url=config.base_url or None,
            max_retries=0,
            timeout=3600.0,  # the engine owns deadlines
            http_client=transport.client(groq.DefaultAsyncHttpxClient, event_hooks=sse.event_hooks()),
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, groq, provider_uid=self.uid, model=model, secret=self._secret)

    def _kwargs(self, request: ChatRequest) -> dict:
        kwargs = chat_completions.request_kwargs(request)
        search = request.web_search
        if search is None:
            return kwargs
        if not _searches(request.model):
            raise exc.Unsupported(
                "this Groq model cannot search the web; Groq's compound models can (groq/compound, "
                "groq/compound-mini)", provider_uid=self.uid, model=request.model,
            )
        settings = {
            "include_domains": list(search.allowed_domains) or None,
            "exclude_domains": list(search.blocked_domains) or None,
            "country": search.user_location.get("country"),
        }
        settings = {k: v for k, v in settings.items() if v is not None}
        if settings:
            kwargs["search_settings"] = settings
        return kwargs

    async def chat(self, request: ChatRequest) -> ChatResult:
        completion = await chat_completions.create(self.client, CHAT_COMPLETIONS, self._kwargs(request))
        return chat_completions.result_from_completion(completion, provider_uid=self.uid, citations_of=_citations)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await chat_completions.create(self.client, CHAT_COMPLETIONS, self._kwargs(request), stream=True)
        try:
            async for chunk in chat_completions.chunks_from_stream(
                stream, provider_uid=self.uid, model=request.model, usage_of=_usage, citations_of=_stream_citations
            ):
                yield chunk
        finally:
            await stream.close()

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        # Every Groq speech model is a Whisper: verbose_json always gives language and duration.
        result = await self.client.audio.transcriptions.create(**whisper_kwargs(request, verbose=True))
        return whisper_result(result, request)
