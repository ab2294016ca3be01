"""ElevenLabs: text to speech and speech to text (scribe) through the official async SDK.

The SDK has no client-wide retry switch, so every call passes ``max_retries: 0`` (its
speech-to-text retry is broken besides: it resends the file without the form fields). Deadlines
are the engine's. Voices are named by id, or by name ("Rachel"): a name is looked up once through
the voices API and remembered for the life of this adapter, that is, of this config version.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pydantic
from elevenlabs import VoiceSettings as SdkVoiceSettings
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.parse_error import ParsingError

from providers import exceptions as exc
from providers.adapters import transport
from providers.adapters.audio import (
    SpeechChunk,
    SpeechRequest,
    SpeechResult,
    SpeechUsage,
    TranscriptionRequest,
    TranscriptionResult,
    TranscriptionUsage,
    Word,
)
from providers.adapters.errors import error_for_status, redact, retry_after_seconds, transport_error
from providers.adapters.languages import iso639_1
from providers.adapters.options import ConfigSnapshot, ProviderOptions


class Options(ProviderOptions):
    pass


# What a client may put in ``provider_options``, by capability (see providers.adapters).
PROVIDER_OPTIONS = {
    "speech": frozenset({
        "previous_text", "next_text", "previous_request_ids", "next_request_ids", "apply_text_normalization",
        "apply_language_text_normalization", "pronunciation_dictionary_locators",
    }),
    # Not webhook or cloud_storage_url: they would make the vendor call an address the client chooses.
    "transcription": frozenset({
        "tag_audio_events", "num_speakers", "timestamps_granularity", "diarize", "diarization_threshold",
        "use_multi_channel", "seed",
    }),
}


# The API's portable formats in ElevenLabs' own terms (it makes no aac or flac). The sample rate
# of pcm and wav matches OpenAI's (24 kHz), so a fallback between the two plays the same way.
_FORMATS = {"mp3": "mp3_44100_128", "opus": "opus_48000_128", "wav": "wav_24000", "pcm": "pcm_24000"}
_NATIVE_FORMAT = re.compile(r"^(mp3|opus|pcm|wav|ulaw|alaw)_\d{4,5}(_\d{2,3})?$")
_CODEC_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "pcm": "audio/pcm", "wav": "audio/wav",
                "ulaw": "audio/basic", "alaw": "audio/alaw"}
_VOICE_ID = re.compile(r"^[A-Za-z0-9]{20}$")  # ElevenLabs voice ids: 20 letters and digits
_WHOLE_FILE_CHUNK = 64 * 1024  # buffered speech: fewer, larger reads


def output_format(request: SpeechRequest) -> tuple[str, str]:
    """(ElevenLabs format name, Content-Type) for the asked format; Unsupported before any call."""
    native = _FORMATS.get(request.output_format, request.output_format)
    if not _NATIVE_FORMAT.match(native):
        raise exc.Unsupported(
            f"output_format '{request.output_format}' is not one ElevenLabs produces "
            f"({', '.join(_FORMATS)}, or its own names such as mp3_22050_32)",
            model=request.model,
        )
    return native, _CODEC_TYPES[native.split("_")[0]]


def _message(body: Any) -> str:
    """The human part of an ElevenLabs error body: {"detail": {"message", "code"}} or a 422 list."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        message = str(detail.get("message") or "")
        code = detail.get("code") or detail.get("status")
        return f"{message} [{code}]" if message and code else message
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg', '')}"
            for item in detail if isinstance(item, dict)
        )
    return str(detail or "")[:500]


class Adapter:
    def __init__(self, config: ConfigSnapshot) -> None:
        Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        # Our own HTTP client, because the SDK's default one follows redirects, and a redirect would
        # carry the xi-api-key header (httpx drops only Authorization) wherever the redirect points.
        self.client = AsyncElevenLabs(
            api_key=config.api_key, base_url=config.base_url or None, timeout=3600.0,
            httpx_client=transport.client(httpx.AsyncClient, timeout=3600.0),
        )
        self._voice_ids: dict[str, str] = {}  # casefolded voice name -> voice id
        self._voice_lookup = asyncio.Lock()

    def map_error(self, error: BaseException, model: str) -> exc.ProviderError | None:
        context = {"provider_uid": self.uid, "model": model}
        if isinstance(error, ApiError):
            status = error.status_code or 502
            message = redact(_message(error.body), self._secret)
            if status == 402:  # the account is out of credits: the gateway's problem, not the client's
                return exc.AuthFailed(message or "the provider account has no credits left", upstream_status=402,
                                      **context)
            if message.endswith("[bad_prompt]"):  # ElevenLabs' code for text its terms of service refuse
                return exc.ContentPolicy(f"refused by content policy: {message}", upstream_status=status, **context)
            return error_for_status(status, message, retry_after=retry_after_seconds(error.headers), **context)
        if isinstance(error, ParsingError | pydantic.ValidationError | json.JSONDecodeError):
            return exc.Unavailable("the provider sent an answer that could not be read", **context)
        return transport_error(error, **context)

    async def _voice_id(self, voice: str) -> str:
        if _VOICE_ID.match(voice):
            return voice
        key = voice.casefold()
        if key not in self._voice_ids:
            async with self._voice_lookup:  # a burst of first requests makes one lookup, not one each
                if key not in self._voice_ids:
                    found = await self.client.voices.search(search=voice, page_size=100,
                                                            request_options={"max_retries": 0})
                    for match in found.voices:
                        self._voice_ids.setdefault(match.name.casefold(), match.voice_id)
        if key not in self._voice_ids:
            raise exc.BadRequest(f"no ElevenLabs voice is named '{voice}' (give a voice name or id of this account)")
        return self._voice_ids[key]

    async def _tts_kwargs(self, request: SpeechRequest, fmt: str) -> dict[str, Any]:
        given = vars(request.voice_settings) if request.voice_settings else {}
        settings = {k: v for k, v in given.items() if v is not None}
        if request.speed is not None:
            settings.setdefault("speed", request.speed)
        options: dict[str, Any] = {"max_retries": 0}
        if request.provider_options:
            options["additional_body_parameters"] = dict(request.provider_options)
        kwargs: dict[str, Any] = {
            "text": request.text, "model_id": request.model, "output_format": fmt, "request_options": options,
        }
        if settings:
            kwargs["voice_settings"] = SdkVoiceSettings(**settings)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.language_code:
            kwargs["language_code"] = request.language_code
        # The voice is resolved last, after the format was checked: a refusal costs no voices call.
        return {"voice_id": await self._voice_id(request.voice), **kwargs}

    async def speak(self, request: SpeechRequest) -> SpeechResult:
        fmt, content_type = output_format(request)
        kwargs = await self._tts_kwargs(request, fmt)
        kwargs["request_options"]["chunk_size"] = _WHOLE_FILE_CHUNK
        audio = b"".join([chunk async for chunk in self.client.text_to_speech.convert(**kwargs)])
        return SpeechResult(audio, content_type, SpeechUsage(len(request.text), len(audio)))

    async def speak_stream(self, request: SpeechRequest) -> AsyncIterator[SpeechChunk]:
        fmt, content_type = output_format(request)
        chunks = self.client.text_to_speech.stream(**await self._tts_kwargs(request, fmt))
        try:
            async for data in chunks:
                if data:
                    yield SpeechChunk(data, content_type)
        finally:
            await chunks.aclose()  # closes the HTTP response: upstream stops when we stop

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        options: dict[str, Any] = {"max_retries": 0}
        if request.provider_options:
            options["additional_body_parameters"] = dict(request.provider_options)
        kwargs: dict[str, Any] = {"model_id": request.model, "file": request.file.as_file(), "request_options": options}
        if request.language:
            kwargs["language_code"] = request.language
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        result = await self.client.speech_to_text.convert(**kwargs)
        duration = getattr(result, "audio_duration_secs", None)
        words = None
        if "word" in request.timestamps and getattr(result, "words", None) is not None:
            words = tuple(Word(w.start or 0.0, w.end or 0.0, w.text) for w in result.words if w.type == "word")
        return TranscriptionResult(
            text=getattr(result, "text", "") or "",
            language=iso639_1(getattr(result, "language_code", None)) or iso639_1(request.language),
            duration=duration,
            usage=TranscriptionUsage(request.file.size, duration),
            words=words,  # scribe gives words, never segments
        )
