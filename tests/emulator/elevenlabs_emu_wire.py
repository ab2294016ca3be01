"""ElevenLabs wire shapes for the emulator: catalogs (models, premade voices, output formats),
error bodies, the deterministic audio and transcripts. The HTTP handlers are in elevenlabs_emu.py.

Error bodies use the current shape ``{"detail": {"type", "code", "message", "status", "request_id"}}``
(a superset of the legacy ``{"detail": {"status", "message"}}`` older clients read; ``x-trace-id``
carries the same request id). Validation errors, which the real API raises before checking the
key, are FastAPI's ``422 {"detail": [{"type", "loc", "msg", "input"}]}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

DEFAULT_TTS_MODEL = "eleven_multilingual_v2"
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"

# model_id -> maximum characters per request (the documented limits)
TTS_MODELS = {
    "eleven_v3": 5000,
    "eleven_multilingual_v2": 10000,
    "eleven_flash_v2_5": 40000,
    "eleven_flash_v2": 30000,
    "eleven_turbo_v2_5": 40000,
    "eleven_turbo_v2": 30000,
    "eleven_monolingual_v1": 10000,
    "eleven_multilingual_v1": 10000,
}
STT_MODELS = ("scribe_v1", "scribe_v2")

# Premade voices with their real, long-standing ids: (id, name, gender, accent, description, age, use case)
VOICES = [
    ("21m00Tcm4TlvDq8ikWAM", "Rachel", "female", "american", "calm", "young", "narration"),
    ("29vD33N1CtxCmqQRPOHJ", "Drew", "male", "american", "well-rounded", "middle aged", "news"),
    ("2EiwWnXFnvU5JabPnv8n", "Clyde", "male", "american", "war veteran", "middle aged", "video games"),
    ("AZnzlk1XvdvUeBnXmlld", "Domi", "female", "american", "strong", "young", "narration"),
    ("EXAVITQu4vr4xnSDxMaL", "Bella", "female", "american", "soft", "young", "narration"),
    ("ErXwobaYiN019PkySvjV", "Antoni", "male", "american", "well-rounded", "young", "narration"),
    ("MF3mGyEYCl7XYWbV9V6O", "Elli", "female", "american", "emotional", "young", "narration"),
    ("TxGEqnHWrfWFTfGW9XjX", "Josh", "male", "american", "deep", "young", "narration"),
    ("VR6AewLTigWG4xSOukaG", "Arnold", "male", "american", "crisp", "middle aged", "narration"),
    ("pNInz6obpgDQGcFmaJgB", "Adam", "male", "american", "deep", "middle aged", "narration"),
    ("yoZ06aMxZJJ28mfd3POQ", "Sam", "male", "american", "raspy", "young", "narration"),
    ("JBFqnCBsd6RMkjVDRZzb", "George", "male", "british", "raspy", "middle aged", "narration"),
]
VOICE_IDS = {voice[0] for voice in VOICES}

# codec -> (Content-Type, leading magic bytes). Only audio/mpeg is confirmed from real traffic.
CODECS = {
    "mp3": ("audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x00\x00"),
    "opus": ("audio/opus", b"OggS\x00\x02"),
    "pcm": ("audio/pcm", b""),
    "wav": ("audio/wav", b""),
    "ulaw": ("audio/basic", b""),
    "alaw": ("audio/alaw", b""),
}
_MP3 = ("22050_32", "24000_48", "44100_32", "44100_64", "44100_96", "44100_128", "44100_192")
_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
OUTPUT_FORMATS = (
    {f"mp3_{suffix}" for suffix in _MP3}
    | {f"opus_48000_{kbps}" for kbps in (32, 64, 96, 128, 192)}
    | {f"{codec}_{hz}" for codec in ("pcm", "wav") for hz in _RATES}
    | {"ulaw_8000", "alaw_8000"}
)

_TOO_MANY = (
    "Too many concurrent requests. Your current subscription is associated with a maximum of 2 concurrent "
    "requests (running in parallel). Please upgrade your subscription or contact sales if you want to "
    "increase this limit."
)
# HTTP status -> (type, code, legacy status, message) for eNNN faults
FAULT_ERRORS = {
    400: ("invalid_request", "invalid_parameters", "invalid_parameters", "Invalid parameters."),
    401: ("authentication_error", "unauthorized", "invalid_api_key", "Invalid API key"),
    402: ("payment_required", "insufficient_credits", "insufficient_credits", "Insufficient credits."),
    403: (
        "authorization_error",
        "insufficient_permissions",
        "missing_permissions",
        "The API key you used is missing the permission text_to_speech to execute this operation.",
    ),
    404: ("not_found", "not_found", "not_found", "Not found."),
    429: ("rate_limit_error", "concurrent_limit_exceeded", "too_many_concurrent_requests", _TOO_MANY),
    500: ("internal_error", "internal_error", "internal_error", "An internal server error occurred."),
    503: (
        "service_unavailable",
        "service_unavailable",
        "system_busy",
        "Our services are experiencing high levels of traffic and your request could not be processed.",
    ),
}


def content_type(output_format: str) -> str:
    return CODECS[output_format.split("_")[0]][0]


def synthesize(
    text: str,
    voice_id: str,
    model_id: str = DEFAULT_TTS_MODEL,
    output_format: str = DEFAULT_OUTPUT_FORMAT,
    *,
    voice_settings: dict[str, Any] | None = None,
    language_code: str | None = None,
    seed: int | None = None,
    tokens: int | None = None,
) -> bytes:
    """The audio the emulator answers: a header naming what arrived, the text, then filler bytes.

    Not playable, but it starts with the codec's magic (a complete RIFF header for wav), so tests
    can check the format and see that every parameter arrived intact.
    """
    settings = json.dumps(voice_settings, sort_keys=True, separators=(",", ":")) if voice_settings else "-"
    seed_text = "-" if seed is None else seed
    line = f"EMU-TTS voice={voice_id} model={model_id} format={output_format} language={language_code or '-'}"
    head = f"{line} seed={seed_text} settings={settings}\n{text}\n".encode()
    size = 4096 + (512 * tokens if tokens else 64 * len(text))
    payload = head + hashlib.shake_256(head).digest(size)
    codec = output_format.split("_")[0]
    if codec != "wav":
        return CODECS[codec][1] + payload
    rate = int(output_format.split("_")[1])
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(payload))
        + b"WAVE"
        + fmt
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )


def voice_json(voice: tuple[str, ...]) -> dict[str, Any]:
    voice_id, name, gender, accent, description, age, use_case = voice
    # Rachel's preview file name is the real one; the others are stand-ins of the same form.
    preview = (
        "df6788f9-5c96-470d-8312-aab3b3d8f50a"
        if name == "Rachel"
        else uuid.uuid5(uuid.NAMESPACE_URL, voice_id)
    )
    labels = {
        "accent": accent,
        "description": description,
        "age": age,
        "gender": gender,
        "use_case": use_case,
    }
    return {
        "voice_id": voice_id,
        "name": name,
        "samples": None,
        "category": "premade",
        "fine_tuning": None,
        "labels": labels,
        "description": None,
        "preview_url": f"https://storage.googleapis.com/eleven-public-prod/premade/voices/{voice_id}/{preview}.mp3",
        "available_for_tiers": [],
        "settings": None,
        "sharing": None,
        "high_quality_base_model_ids": ["eleven_turbo_v2", "eleven_multilingual_v2", "eleven_turbo_v2_5"],
        "verified_languages": [],
        "is_owner": False,
        "is_legacy": False,
    }


def model_json(model_id: str, limit: int) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "name": model_id.replace("_", " ").title(),
        "can_do_text_to_speech": True,
        "can_do_voice_conversion": False,
        "can_use_style": True,
        "can_use_speaker_boost": True,
        "maximum_text_length_per_request": limit,
        "languages": [{"language_id": "en", "name": "English"}],
    }


def transcript(text: str, language: str | None, size: int) -> dict[str, Any]:
    """A ``SpeechToTextChunkResponseModel``: word and spacing entries, half a second per word."""
    entries: list[dict[str, Any]] = []
    at = 0.0
    for index, word in enumerate(text.split(" ")):
        if index:
            entries.append(
                {
                    "text": " ",
                    "start": at,
                    "end": at,
                    "type": "spacing",
                    "speaker_id": "speaker_0",
                    "logprob": 0.0,
                }
            )
        entries.append(
            {
                "text": word,
                "start": at,
                "end": round(at + 0.4, 2),
                "type": "word",
                "speaker_id": "speaker_0",
                "logprob": -0.05,
            }
        )
        at = round(at + 0.5, 2)
    return {
        "language_code": language or "eng",
        "language_probability": 1.0 if language else 0.98,
        "text": text,
        "words": entries,
        "transcription_id": hashlib.sha256(text.encode()).hexdigest()[:20],
        "audio_duration_secs": max(at, math.ceil(size / 32000 * 100) / 100),
    }


def error(
    status: int, type_: str, code: str, legacy: str, message: str, headers: dict | None = None
) -> Response:
    request_id = uuid.uuid4().hex
    detail = {"type": type_, "code": code, "message": message, "status": legacy, "request_id": request_id}
    return JSONResponse({"detail": detail}, status, headers={"x-trace-id": request_id, **(headers or {})})


def voice_not_found(voice_id: str) -> Response:
    message = f"A voice with the voice_id {voice_id} was not found."
    return error(404, "not_found", "voice_not_found", "voice_not_found", message)


def validation_error(problems: list[dict[str, Any]]) -> Response:
    return JSONResponse({"detail": problems}, 422)


def problem(kind: str, loc: list[Any], msg: str, value: Any = None, **ctx: Any) -> dict[str, Any]:
    entry = {"type": kind, "loc": loc, "msg": msg, "input": value}
    return entry | ({"ctx": ctx} if ctx else {})


def tts_problems(body: Any) -> list[dict[str, Any]]:
    """The 422s the real API raises before authentication."""
    if not isinstance(body, dict):
        return [problem("model_attributes_type", ["body"], "Input should be a valid dictionary", body)]
    problems = []
    if body.get("text") is None:
        problems.append(problem("missing", ["body", "text"], "Field required"))
    elif not isinstance(body["text"], str):
        problems.append(
            problem("string_type", ["body", "text"], "Input should be a valid string", body["text"])
        )
    settings = body.get("voice_settings") if isinstance(body.get("voice_settings"), dict) else {}
    for name in ("stability", "similarity_boost"):
        value = settings.get(name)
        loc = ["body", "voice_settings", name]
        if isinstance(value, int | float) and value > 1:
            problems.append(
                problem("less_than_equal", loc, "Input should be less than or equal to 1", value, le=1.0)
            )
        elif isinstance(value, int | float) and value < 0:
            problems.append(
                problem(
                    "greater_than_equal", loc, "Input should be greater than or equal to 0", value, ge=0.0
                )
            )
    normalization = body.get("apply_text_normalization")
    if normalization not in (None, "auto", "on", "off"):
        expected = "'auto', 'on' or 'off'"
        loc = ["body", "apply_text_normalization"]
        problems.append(problem("enum", loc, f"Input should be {expected}", normalization, expected=expected))
    return problems
