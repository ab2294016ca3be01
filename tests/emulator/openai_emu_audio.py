"""OpenAI-style audio: ``/audio/speech`` (text to speech) and ``/audio/transcriptions`` (+ translations).

Speech bytes are a deterministic function of (model, voice, format, speed, instructions, text), so
a test can compare what a client got with ``speech_bytes(...)``. A transcript names the uploaded
file, its size in bytes, the model and the language, so a test sees that the upload arrived whole.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import replace
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.core import Emulator, Fault, count_tokens, paced, split_tokens, words
from tests.emulator.openai_emu_common import (
    Dialect,
    before_answer,
    data_event,
    midstream,
    read_json,
    sse_response,
)

SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_MAGIC = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "opus": b"OggS\x00\x02",
    "aac": b"\xff\xf1\x50\x80",
    "flac": b"fLaC",
}
SAMPLE_RATE = 24000  # OpenAI's pcm: 24 kHz, 16-bit little-endian, mono
SECONDS_PER_WORD = 0.2
CHUNK = 4096


def speech_bytes(
    text: str, voice: Any, model: str, fmt: str = "mp3", speed: float = 1.0, instructions: str = ""
) -> bytes:
    """The audio the emulator answers for these inputs (``model`` without its fault suffix)."""
    seed = hashlib.sha256(repr((model, voice, fmt, float(speed), instructions, text)).encode()).digest()
    seconds = SECONDS_PER_WORD * max(count_tokens(text), 1) / (speed or 1.0)
    size = int(SAMPLE_RATE * seconds) * 2
    samples = (seed * (size // len(seed) + 1))[:size]
    if fmt == "wav":
        header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
        header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        return header + b"data" + struct.pack("<I", size) + samples
    return _MAGIC.get(fmt, b"") + samples


async def speech(request: Request, emu: Emulator, dialect: Dialect) -> Response:
    denied = dialect.check_key(emu, request)
    if denied:
        return denied
    body = await read_json(request, dialect)
    if isinstance(body, Response):
        return body
    for field in ("input", "voice"):
        if not body.get(field):
            return dialect.error_response(
                400,
                dialect.error(
                    f"Missing required parameter: '{field}'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    field,
                ),
            )
    fmt = body.get("response_format") or "mp3"
    if fmt not in SPEECH_TYPES:
        return dialect.error_response(
            400,
            dialect.error(
                f"Invalid value: '{fmt}'. Supported values are: {', '.join(SPEECH_TYPES)}.",
                "invalid_request_error",
                "invalid_value",
                "response_format",
            ),
        )
    admitted = await dialect.admit(emu, request, body.get("model"), param="input", stream=True)
    if isinstance(admitted, Response):
        return admitted
    base, fault = admitted
    text = str(body["input"])
    audio = speech_bytes(
        text, body["voice"], base, fmt, float(body.get("speed") or 1.0), body.get("instructions") or ""
    )
    chunks = [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]
    if body.get("stream_format") == "sse":
        events = [
            data_event({"type": "speech.audio.delta", "audio": base64.b64encode(c).decode()}) for c in chunks
        ]
        tokens = count_tokens(text)
        usage = {"input_tokens": tokens, "output_tokens": len(chunks), "total_tokens": tokens + len(chunks)}
        done = data_event({"type": "speech.audio.done", "usage": usage})
        return _sse(fault, events, done, b'data: {"type":"speech.audio.delta","audio":\n\n', base, dialect)
    # the real endpoint always answers with chunked transfer; malformed events, terminators and
    # in-band errors mean nothing in raw bytes, so only the pacing faults (slow, gap, cut, stall) apply
    stream = paced(replace(fault, bad=None, bad_again=None, nodone=False), chunks, malformed=b"")
    return sse_response(stream, dialect, SPEECH_TYPES[fmt])


def audio_seconds(head: bytes, size: int) -> float:
    """Duration of an upload: from the WAV header when there is one, else as 16 kHz 16-bit mono."""
    if len(head) >= 44 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        byte_rate = struct.unpack("<I", head[28:32])[0]
        if byte_rate:
            return round(max(size - 44, 0) / byte_rate, 3)
    return round(size / 32000, 3)


def transcript_text(
    task: str, filename: str, size: int, model: str, language: str, form: Any, long: int | None
) -> str:
    verb = "translation" if task == "translate" else "transcript"
    extras = "".join(f" {k}={form[k]}" for k in ("prompt", "temperature") if form.get(k))
    text = f"{verb} of {filename} ({size} bytes) [model={model} language={language}{extras}]"
    if long is not None:
        text += " " + " ".join(words(long, filename))
    return text


def _verbose(text: str, seconds: float, language: str, granularities: list[str]) -> dict[str, Any]:
    tokens = split_tokens(text)
    body: dict[str, Any] = {"duration": seconds, "text": text}
    if granularities != ["word"]:  # segments are the default granularity
        body["segments"] = [
            {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": " " + text, "tokens": list(range(50364, 50364 + len(tokens))),
             "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.2, "no_speech_prob": 0.01}
        ]  # fmt: skip
    if "word" in granularities:
        step = seconds / max(len(tokens), 1)
        body["words"] = [
            {"word": w.strip(), "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
            for i, w in enumerate(tokens)
        ]
    return {"task": "transcribe", "language": language, **body}


def _timestamp(seconds: float, sep: str) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d}{sep}{millis % 1000:03d}"


async def transcriptions(
    request: Request, emu: Emulator, dialect: Dialect, task: str = "transcribe"
) -> Response:
    denied = dialect.check_key(emu, request)
    if denied:
        return denied
    try:
        form = await request.form()
    except Exception:  # malformed multipart: what the real API says to any unparsable body
        return dialect.error_response(
            400, dialect.error("Could not parse multipart form", "invalid_request_error")
        )
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return dialect.error_response(
            400,
            dialect.error(
                "Missing required parameter: 'file'.",
                "invalid_request_error",
                "missing_required_parameter",
                "file",
            ),
        )
    stream = form.get("stream") == "true"
    admitted = await dialect.admit(emu, request, form.get("model"), param="file", stream=stream)
    if isinstance(admitted, Response):
        return admitted
    base, fault = admitted
    head = await upload.read(44)
    size = upload.size if upload.size is not None else len(head) + len(await upload.read())
    code = "en" if task == "translate" else str(form.get("language") or "en")
    text = transcript_text(task, upload.filename or "file", size, base, code, form, fault.tokens)
    seconds = audio_seconds(head, size)
    fmt = form.get("response_format") or "json"
    if stream:
        return _stream_transcript(text, base, fault, dialect)
    await before_answer(fault)
    if fmt in ("text", "srt", "vtt"):
        if fmt == "srt":
            text = f"1\n{_timestamp(0, ',')} --> {_timestamp(seconds, ',')}\n{text}\n\n"
        elif fmt == "vtt":
            text = f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(seconds, '.')}\n{text}\n\n"
        return Response(text, headers=dialect.headers(), media_type="text/plain")
    if fmt == "verbose_json":
        language = dialect.language_name(code)
        body = _verbose(text, seconds, language, list(form.getlist("timestamp_granularities[]")))
        if task == "translate":
            body["task"] = "translate"
        return dialect.json(
            {**body, **dialect.transcription_usage(base, text, seconds, verbose=True), **dialect.extras()}
        )
    return dialect.json(
        {"text": text, **dialect.transcription_usage(base, text, seconds, verbose=False), **dialect.extras()}
    )


def _stream_transcript(text: str, model: str, fault: Fault, dialect: Dialect) -> Response:
    pieces = [p for p in split_tokens(text) if p]
    events = [data_event({"type": "transcript.text.delta", "delta": p, "logprobs": []}) for p in pieces]
    tokens = count_tokens(text)
    usage = {"type": "tokens", "input_tokens": 20, "input_token_details": {"text_tokens": 0, "audio_tokens": 20},
             "output_tokens": tokens, "total_tokens": 20 + tokens}  # fmt: skip
    done = data_event({"type": "transcript.text.done", "text": text, "logprobs": [], "usage": usage})
    return _sse(fault, events, done, b'data: {"type":"transcript.text.delta","delta":\n\n', model, dialect)


def _sse(
    fault: Fault, events: list[bytes], done: bytes, malformed: bytes, model: str, dialect: Dialect
) -> Response:
    """An audio SSE stream, with the stream faults and the in-band error of ``eNNN~cutN``."""
    error = data_event(dialect.stream_error(fault.status or 500, model))
    fault, events, whole = midstream(fault, events, error)
    return sse_response(
        paced(fault, events, malformed=malformed, terminator=[done] if whole else []), dialect
    )
