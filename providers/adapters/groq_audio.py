"""Groq transcription (whisper-large-v3, whisper-large-v3-turbo): a mixin of the Groq adapter.

Groq serves OpenAI's transcription API; the request and result shapes are shared with OpenAI's.
"""

from __future__ import annotations

from typing import Any

from providers.adapters.audio_types import TranscriptionRequest, TranscriptionResult
from providers.adapters.openai_audio import whisper_kwargs, whisper_result


class GroqAudio:
    client: Any

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        # Every Groq speech model is a Whisper: verbose_json always gives language and duration.
        result = await self.client.audio.transcriptions.create(**whisper_kwargs(request, verbose=True))
        return whisper_result(result, request)
