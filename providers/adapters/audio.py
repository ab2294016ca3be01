"""Speech and transcription: request, result and chunk types, and their capability protocols.

An adapter that implements ``Speech`` must:
- refuse, before any call, an output format or a voice its vendor cannot use (``Unsupported``);
- stream audio bytes as the provider sends them (no buffering beyond what the SDK does), tagging
  each :class:`SpeechChunk` with the Content-Type of the format it asked for;
- let a broken stream raise (a transport error, mapped by ``map_error``): raw audio has no finish
  signal but the end of the body, so a stream that stops early must never end quietly.

An adapter that implements ``Transcription`` must send the upload as it is (name, bytes, mime
type), reading ``AudioUpload.content`` afresh for every call (a retry sends it again), and report
the language as an ISO 639-1 code when it can (see :mod:`providers.adapters.languages`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

# The portable output formats every speech endpoint of the API accepts, and their media types.
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


# ---- speech (text to speech) --------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceSettings:
    """ElevenLabs-style voice settings; adapters of vendors without them ignore them."""

    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    text: str
    voice: str  # a vendor voice name or id
    output_format: str = "mp3"  # one of CONTENT_TYPES, or a vendor's own format name
    speed: float | None = None
    instructions: str | None = None  # how to speak (OpenAI's gpt-4o TTS models)
    voice_settings: VoiceSettings | None = None
    seed: int | None = None
    language_code: str | None = None
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechUsage:
    """What the request log records of a speech result, under these very names."""

    characters: int
    audio_bytes: int


@dataclass(frozen=True)
class SpeechResult:
    audio: bytes
    content_type: str
    usage: SpeechUsage


@dataclass(frozen=True)
class SpeechChunk:
    data: bytes
    content_type: str


@runtime_checkable
class Speech(Protocol):
    async def speak(self, request: SpeechRequest) -> SpeechResult: ...

    def speak_stream(self, request: SpeechRequest) -> AsyncIterator[SpeechChunk]: ...


# ---- transcription (speech to text) -------------------------------------------------------------


@dataclass(frozen=True)
class AudioUpload:
    """An uploaded audio file. ``content`` is bytes or a seekable binary file (a spooled upload)."""

    name: str
    content: bytes | IO[bytes] = field(repr=False)
    mime_type: str
    size: int

    def as_file(self) -> tuple[str, bytes | IO[bytes], str]:
        """The (name, content, mime) tuple the SDKs take. Files are rewound: a retry sends them whole."""
        if not isinstance(self.content, bytes):
            self.content.seek(0)
        return self.name, self.content, self.mime_type


@dataclass(frozen=True)
class TranscriptionRequest:
    model: str
    file: AudioUpload
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    # What the client wants back besides the text: "segment" and/or "word" timings.
    timestamps: frozenset[str] = frozenset()
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str


@dataclass(frozen=True)
class TranscriptionUsage:
    """What the request log records of a transcription, under these very names."""

    audio_bytes: int
    audio_seconds: float | None = None


@dataclass(frozen=True)
class TranscriptionResult:
    text: str
    language: str | None
    duration: float | None
    usage: TranscriptionUsage
    segments: tuple[Segment, ...] | None = None  # None: the provider gave none, or none was asked for
    words: tuple[Word, ...] | None = None


@runtime_checkable
class Transcription(Protocol):
    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult: ...
