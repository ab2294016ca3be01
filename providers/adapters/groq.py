"""Groq: OpenAI-compatible chat through the official async SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import groq

from providers.adapters import openai_compat
from providers.adapters.base import (
    IMAGE_TYPES,
    ChatRequest,
    ChatResult,
    Chunk,
    ConfigSnapshot,
    ProviderOptions,
    map_stainless_error,
)
from providers.exceptions import ProviderError


class Options(ProviderOptions):
    pass


def _usage(chunk):
    # Groq reports stream usage in its own extension on the last chunk.
    return chunk.x_groq.usage if chunk.x_groq and chunk.x_groq.usage else chunk.usage


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
        )

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return map_stainless_error(error, groq, provider_uid=self.uid, model=model, secret=self._secret)

    async def chat(self, request: ChatRequest) -> ChatResult:
        completion = await self.client.chat.completions.create(**openai_compat.request_kwargs(request))
        return openai_compat.result_from_completion(completion)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        stream = await self.client.chat.completions.create(**openai_compat.request_kwargs(request), stream=True)
        try:
            async for chunk in openai_compat.chunks_from_stream(stream, usage_of=_usage):
                yield chunk
        finally:
            await stream.close()

    async def aclose(self) -> None:
        await self.client.close()
