"""OpenAI: Chat Completions through the official async SDK; the Responses API for web search."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
from pydantic import Field

from providers.adapters import openai_compat, openai_responses
from providers.adapters.base import (
    IMAGE_TYPES,
    PDF,
    ChatRequest,
    ChatResult,
    Chunk,
    ConfigSnapshot,
    ProviderOptions,
    map_stainless_error,
)
from providers.adapters.openai_audio import OpenAIAudio
from providers.exceptions import ProviderError


class Options(ProviderOptions):
    organization: str | None = Field(None, max_length=200)
    project: str | None = Field(None, max_length=200)


# What a client may put in ``provider_options``, by capability (see base.py).
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
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, openai, provider_uid=self.uid, model=model, secret=self._secret)

    async def chat(self, request: ChatRequest) -> ChatResult:
        if request.web_search is not None:
            response = await self.client.responses.create(**openai_responses.request_kwargs(request, self.uid))
            return openai_responses.result_from_response(response, self.uid)
        completion = await self.client.chat.completions.create(**openai_compat.request_kwargs(request))
        return openai_compat.result_from_completion(completion, provider_uid=self.uid)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if request.web_search is not None:
            stream = await self.client.responses.create(
                **openai_responses.request_kwargs(request, self.uid), stream=True
            )
            chunks = openai_responses.chunks_from_events(stream, self.uid, request.model, self._secret)
        else:
            stream = await self.client.chat.completions.create(
                **openai_compat.request_kwargs(request), stream=True, stream_options={"include_usage": True}
            )
            chunks = openai_compat.chunks_from_stream(stream, provider_uid=self.uid, model=request.model)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await stream.close()  # closes the HTTP response, so upstream stops generating

    async def aclose(self) -> None:
        await self.client.close()
