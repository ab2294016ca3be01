"""The audio API's request and response shapes (paths and payloads as the original service).

Uploads are checked here, before any provider is called: base64 that does not decode, an empty
file, or a mime type that is not audio are 400s. The size limit (413) is the service's, since a
validation error is always a 400.
"""

from __future__ import annotations

import binascii
import mimetypes
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Json,
    field_validator,
    model_validator,
)

from providers.schemas import (
    MIME,
    MODEL,
    PROVIDER_UID,
    ROUTE_NAME,
    AttemptOut,
    ChainIn,
    EntryIn,
    StreamLimitsIn,
    Strict,
    single_or_fallback,
)

_LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
_UNSPECIFIED = {"", "application/octet-stream", "binary/octet-stream"}


def audio_mime(declared: str | None, filename: str) -> str:
    """The upload's audio mime type: the declared one, or (when none was given, as curl does for a
    .wav) the one its file name implies. ValueError if that is not audio."""
    mime = (declared or "").split(";")[0].strip().lower()
    if mime in _UNSPECIFIED:
        mime = (mimetypes.guess_type(filename)[0] or "").lower()
        if not mime:
            raise ValueError("no mime type given, and none follows from the file name: send an audio/* type")
    if not MIME.match(mime):
        raise ValueError(f"the file's mime type '{mime}' is not a mime type (such as audio/wav)")
    if not mime.startswith("audio/"):
        raise ValueError(f"the file must be audio (audio/*), not {mime}")
    return mime


def check_filename(name: str) -> str:
    """The file name providers get: its last path part, 1 to 255 characters, no control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("the file needs a name of 1 to 255 characters, without control characters")
    return name


@dataclass(frozen=True)
class Base64Audio:
    """A decoded ``["name", "<base64>", "mime"]`` upload."""

    name: str
    data: bytes
    mime_type: str


def _shape_of_file(value: Any) -> Any:
    # Checked here, so the message names the field whatever the error handler makes of locations.
    if not (isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise ValueError('the file must be ["name", "<base64 of the audio>", "audio mime type"]')
    return value


def _decode(value: tuple[str, str, str]) -> Base64Audio:
    name, encoded, mime = value
    name = check_filename(name)
    try:
        # strict: only the base64 alphabet and correct padding; decodes a str without copying it first.
        data = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("the file content is not valid base64") from None
    if not data:
        raise ValueError("the file is empty")
    return Base64Audio(name, data, audio_mime(mime, name))


AudioFileIn = Annotated[
    tuple[str, str, str],
    BeforeValidator(_shape_of_file),
    AfterValidator(_decode),
    Field(description='["file name", "<base64 of the audio>", "audio mime type"]'),
]


# ---- speech -------------------------------------------------------------------------------------


class VoiceSettingsIn(Strict):
    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    style: float | None = Field(None, ge=0, le=1)
    use_speaker_boost: bool | None = None


class SpeakGenIn(Strict):
    speed: float | None = Field(None, ge=0.25, le=4.0, description="OpenAI: 0.25-4; ElevenLabs: 0.7-1.2")
    instructions: str | None = Field(None, max_length=4096, description="How to speak (OpenAI gpt-4o TTS)")
    voice_settings: VoiceSettingsIn | None = Field(None, description="ElevenLabs voice settings")
    seed: int | None = Field(None, ge=0, le=4294967295, description="ElevenLabs")
    language_code: str | None = Field(None, pattern=_LANGUAGE, description="ElevenLabs")
    provider_options: dict[str, Any] = Field(default_factory=dict, description="Request fields of the provider's own API that this one does not map, passed as they are; only the keys on each provider's allow-list (README) are accepted")


class SpeakIn(EntryIn, StreamLimitsIn):
    text: str = Field(min_length=1, max_length=100_000)
    voice: str = Field(min_length=1, max_length=200, description="A voice name (alloy, Rachel) or id")
    output_format: str = Field(
        "mp3", pattern=r"^[a-z0-9_]{2,32}$",
        description="mp3, wav, opus, aac, flac, pcm (or an ElevenLabs format name such as mp3_22050_32)",
    )
    gen_config: SpeakGenIn = Field(default_factory=SpeakGenIn)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value


class SpeakFallbackIn(ChainIn, StreamLimitsIn):
    requests: list[SpeakIn] = Field(min_length=1, max_length=10)


class SpeakRouteIn(Strict):
    """Speech over a route: the text, sent to each entry with its own voice and settings."""

    route: str = ROUTE_NAME
    text: str = Field(min_length=1, max_length=100_000)
    output_format: str | None = Field(
        None, pattern=r"^[a-z0-9_]{2,32}$", description="Overrides the entries' own output format")


SpeakBody = single_or_fallback(SpeakIn, SpeakFallbackIn, SpeakRouteIn)


# ---- transcription ------------------------------------------------------------------------------


class TranscribeGenIn(Strict):
    prompt: str | None = Field(None, max_length=4000, description="OpenAI and Groq: context or spellings")
    temperature: float | None = Field(None, ge=0, le=1)
    timestamp_granularities: list[Literal["segment", "word"]] = Field(
        default_factory=list, max_length=2, description="Ask for segments and/or words with timings"
    )
    provider_options: dict[str, Any] = Field(default_factory=dict, description="Request fields of the provider's own API that this one does not map, passed as they are; only the keys on each provider's allow-list (README) are accepted")


class TranscribeFields(EntryIn):
    """What a transcription request says besides the file (the multipart form's text fields)."""

    language: str | None = Field(None, pattern=_LANGUAGE, description="ISO 639-1 (or 639-3) code of the speech")


class TranscribeFormIn(Strict):
    """The multipart form's text fields: a provider config and model, or a route."""

    provider_uid: str | None = Field(None, min_length=1, max_length=64, pattern=PROVIDER_UID)
    model: str | None = Field(None, min_length=1, max_length=200, pattern=MODEL)
    route: str | None = Field(None, min_length=1, max_length=64, pattern=PROVIDER_UID,
                              description="A transcription route's name, in place of provider_uid and model")
    language: str | None = Field(None, pattern=_LANGUAGE, description="ISO 639-1 (or 639-3) code of the speech")
    gen_config: Json[TranscribeGenIn] | None = Field(None, description="A JSON object, as a string")

    @model_validator(mode="after")
    def _one_target(self) -> TranscribeFormIn:
        if self.route is None and (self.provider_uid is None or self.model is None):
            raise ValueError("send provider_uid and model, or route")
        if self.route is not None and (self.provider_uid is not None or self.model is not None):
            raise ValueError("send provider_uid and model, or route, not both")
        return self


class TranscribeIn(TranscribeFields):
    file: AudioFileIn
    gen_config: TranscribeGenIn = Field(default_factory=TranscribeGenIn)


class TranscribeItemIn(TranscribeFields):
    """One request of a chain: without a file, it sends the first request's (one upload, many tries)."""

    file: AudioFileIn | None = None
    gen_config: TranscribeGenIn = Field(default_factory=TranscribeGenIn)


class TranscribeFallbackIn(ChainIn):
    requests: list[TranscribeItemIn] = Field(min_length=1, max_length=10)

    @field_validator("requests")
    @classmethod
    def _first_has_a_file(cls, value: list[TranscribeItemIn]) -> list[TranscribeItemIn]:
        if value and value[0].file is None:
            raise ValueError("the first request needs a file (the others may leave it out to reuse it)")
        return value


class TranscribeRouteIn(Strict):
    """Transcription over a route: the file, sent to each entry with its own language and settings."""

    route: str = ROUTE_NAME
    file: AudioFileIn
    language: str | None = Field(None, pattern=_LANGUAGE, description="Overrides the entries' own language")
    gen_config: TranscribeGenIn | None = Field(None, description="Overrides the entries' own settings, field by field")


TranscribeBody = single_or_fallback(TranscribeIn, TranscribeFallbackIn, TranscribeRouteIn)


class SegmentOut(Schema):
    start: float
    end: float
    text: str


class WordOut(Schema):
    start: float
    end: float
    word: str


class TranscriptOut(Schema):
    request_id: str
    text: str
    language: str | None = Field(description="ISO 639-1 code, when the provider reports or was told it")
    duration: float | None = Field(description="Seconds of audio, when the provider reports it")
    provider_uid: str
    model: str
    attempts: list[AttemptOut]
    segments: list[SegmentOut] | None = Field(None, description="Only when asked for and given by the provider")
    words: list[WordOut] | None = Field(None, description="Only when asked for and given by the provider")
