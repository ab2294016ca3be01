"""OpenAI through the official async SDK: the entry of the vendor (``Options``, ``PROVIDER_OPTIONS``, ``Adapter``).

Chat goes through Chat Completions (:mod:`.chat_completions`), or through the Responses API when
it asks for web search (:mod:`.responses`); speech and transcription are :mod:`.audio`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
from openai.types.chat import ChatCompletion
from pydantic import Field

from providers.adapters import sse, transport
from providers.adapters.chat import IMAGE_TYPES, PDF, ChatRequest, ChatResult, Chunk
from providers.adapters.errors import map_stainless_error
from providers.adapters.openai import chat_completions, responses
from providers.adapters.openai.audio import OpenAIAudio
from providers.adapters.options import ConfigSnapshot, ProviderOptions
from providers.exceptions import ProviderError


class Options(ProviderOptions):
    organization: str | None = Field(None, max_length=200)
    project: str | None = Field(None, max_length=200)


# What a client may put in ``provider_options``, by capability (see providers.adapters).
PROVIDER_OPTIONS = {
    # Chat Completions, and the Responses API that web search uses.
    "chat": frozenset({
        "reasoning_effort", "response_format", "logit_bias", "logprobs", "top_logprobs", "user",
        "safety_identifier", "prompt_cache_key", "service_tier", "parallel_tool_calls", "tool_choice",
        "metadata", "verbosity", "prediction", "reasoning", "text", "truncation",
    }),
    "speech": frozenset({"stream_format"}),
    "transcription": frozenset({"include", "include[]", "chunking_strategy"}),
}


CHAT_COMPLETIONS = ("/chat/completions", ChatCompletion, openai.AsyncStream[object])


class Adapter(OpenAIAudio):
    accepted_mime_types = IMAGE_TYPES | {PDF}

    def __init__(self, config: ConfigSnapshot) -> None:
        options = Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        self.client = openai.AsyncOpenAI(
            api_key=config.api_key,
            base_url=config.base_url or None,
            organization=options.organization,
            project=options.project,
            max_retries=0,  # the engine owns retries
            timeout=3600.0,  # the engine owns deadlines
            http_client=transport.client(openai.DefaultAsyncHttpxClient, event_hooks=sse.event_hooks()),
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, openai, provider_uid=self.uid, model=model, secret=self._secret)

    async def chat(self, request: ChatRequest) -> ChatResult:
        if request.web_search is not None:
            response = await self.client.responses.create(**responses.request_kwargs(request, self.uid))
            return responses.result_from_response(response, self.uid)
        completion = await chat_completions.create(self.client, CHAT_COMPLETIONS, chat_completions.request_kwargs(request))
        return chat_completions.result_from_completion(completion, provider_uid=self.uid)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if request.web_search is not None:
            stream = await self.client.responses.create(
                **responses.request_kwargs(request, self.uid), stream=True
            )
            chunks = responses.chunks_from_events(stream, self.uid, request.model, self._secret)
        else:
            stream = await chat_completions.create(
                self.client, CHAT_COMPLETIONS,
                {**chat_completions.request_kwargs(request), "stream_options": {"include_usage": True}}, stream=True,
            )
            chunks = chat_completions.chunks_from_stream(stream, provider_uid=self.uid, model=request.model)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await stream.close()  # closes the HTTP response, so upstream stops generating
