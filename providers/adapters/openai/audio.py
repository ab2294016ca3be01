"""OpenAI speech and transcription: a mixin of the OpenAI adapter (``self.client`` is its AsyncOpenAI).

The Whisper request and result shapes are shared with Groq, which serves the same API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from providers import exceptions as exc
from providers.adapters.audio import (
    CONTENT_TYPES,
    Segment,
    SpeechChunk,
    SpeechRequest,
    SpeechResult,
    SpeechUsage,
    TranscriptionRequest,
    TranscriptionResult,
    TranscriptionUsage,
    Word,
)
from providers.adapters.languages import iso639_1


def speech_kwargs(request: SpeechRequest) -> dict[str, Any]:
    if request.output_format not in CONTENT_TYPES:
        raise exc.Unsupported(
            f"output_format '{request.output_format}' is not one OpenAI produces ({', '.join(CONTENT_TYPES)})",
            model=request.model,
        )
    kwargs: dict[str, Any] = {
        "model": request.model, "input": request.text, "voice": request.voice,
        "response_format": request.output_format,
    }
    if request.speed is not None:
        kwargs["speed"] = request.speed
    if request.instructions:
        kwargs["instructions"] = request.instructions
    if request.provider_options:
        kwargs["extra_body"] = dict(request.provider_options)
    return kwargs


def whisper_kwargs(request: TranscriptionRequest, *, verbose: bool) -> dict[str, Any]:
    """The transcription call. ``verbose`` asks for verbose_json: language, duration and timings."""
    kwargs: dict[str, Any] = {"model": request.model, "file": request.file.as_file()}
    optional = {"language": request.language, "prompt": request.prompt, "temperature": request.temperature}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if verbose:
        kwargs["response_format"] = "verbose_json"
        if "word" in request.timestamps:  # segments come by default; words only when named
            kwargs["timestamp_granularities"] = sorted(request.timestamps)
    if request.provider_options:
        kwargs["extra_body"] = dict(request.provider_options)
    return kwargs


def _field(item: Any, name: str) -> Any:
    # The openai SDK parses segments into models; groq's Transcription keeps them as plain dicts.
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def whisper_result(result: Any, request: TranscriptionRequest) -> TranscriptionResult:
    duration = _field(result, "duration")
    usage = _field(result, "usage")
    if duration is None and usage is not None and _field(usage, "type") == "duration":
        duration = _field(usage, "seconds")
    segments = words = None
    if "segment" in request.timestamps and _field(result, "segments") is not None:
        segments = tuple(
            Segment(float(_field(s, "start")), float(_field(s, "end")), str(_field(s, "text")).strip())
            for s in _field(result, "segments")
        )
    if "word" in request.timestamps and _field(result, "words") is not None:
        words = tuple(
            Word(float(_field(w, "start")), float(_field(w, "end")), str(_field(w, "word")).strip())
            for w in _field(result, "words")
        )
    return TranscriptionResult(
        text=str(_field(result, "text") or "").strip(),
        # gpt-4o transcription reports no language: the one asked for is the one it transcribed.
        language=iso639_1(_field(result, "language")) or iso639_1(request.language),
        duration=float(duration) if duration is not None else None,
        usage=TranscriptionUsage(request.file.size, float(duration) if duration is not None else None),
        segments=segments,
        words=words,
    )


class OpenAIAudio:
    """Text to speech (tts-1, tts-1-hd, gpt-4o-mini-tts) and transcription (whisper-1, gpt-4o-*-transcribe)."""

    client: Any

    async def speak(self, request: SpeechRequest) -> SpeechResult:
        kwargs = speech_kwargs(request)
        audio = (await self.client.audio.speech.create(**kwargs)).content
        return SpeechResult(audio, CONTENT_TYPES[request.output_format], SpeechUsage(len(request.text), len(audio)))

    async def speak_stream(self, request: SpeechRequest) -> AsyncIterator[SpeechChunk]:
        kwargs = speech_kwargs(request)
        content_type = CONTENT_TYPES[request.output_format]
        # Leaving the block closes the response, so a cancelled or abandoned stream stops upstream too.
        async with self.client.audio.speech.with_streaming_response.create(**kwargs) as response:
            async for data in response.iter_bytes():
                if data:
                    yield SpeechChunk(data, content_type)

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        # Only the whisper models answer verbose_json (language, duration, timings); gpt-4o ones refuse it.
        verbose = request.model.startswith("whisper")
        result = await self.client.audio.transcriptions.create(**whisper_kwargs(request, verbose=verbose))
        return whisper_result(result, request)
