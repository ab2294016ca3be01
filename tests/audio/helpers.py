"""Small helpers for audio tests: a real WAV file, request bodies, and reading what a provider received."""

import base64
import io
import re
import wave

RACHEL = "21m00Tcm4TlvDq8ikWAM"  # the emulator's premade voices carry ElevenLabs' real ids
ADAM = "pNInz6obpgDQGcFmaJgB"
TTS = {"openai": ("tts-1", "alloy"), "elevenlabs": ("eleven_multilingual_v2", "Rachel")}
STT = [("openai", "whisper-1"), ("openai", "gpt-4o-transcribe"), ("groq", "whisper-large-v3"),
       ("groq", "whisper-large-v3-turbo"), ("elevenlabs", "scribe_v1")]


def wav_file(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A real, playable 16-bit mono WAV: a rising ramp, so every byte position differs."""
    frames = b"".join((i % 65536).to_bytes(2, "little") for i in range(int(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def b64_file(data: bytes, name: str = "speech.wav", mime: str = "audio/wav") -> list[str]:
    return [name, base64.b64encode(data).decode(), mime]


def speak(provider: str, model: str | None = None, text: str = "hello there", **extra) -> dict:
    default_model, voice = TTS[provider]
    return {"provider_uid": provider, "model": model or default_model, "text": text, "voice": voice, **extra}


def transcribe(provider: str, model: str, data: bytes | None = None, **extra) -> dict:
    body = {"provider_uid": provider, "model": model, **extra}
    if data is not None:
        body["file"] = b64_file(data)
    return body


def chain(*requests: dict, strategy: str = "sequential", **extra) -> dict:
    return {"requests": list(requests), "strategy": strategy, **extra}


def form_parts(recorded) -> dict[str, tuple[bytes, bytes]]:
    """The parts of a recorded multipart body, exactly as they arrived: name -> (part headers, content)."""
    boundary = re.search(r'boundary="?([^";]+)"?', recorded.headers["content-type"]).group(1).encode()
    parts = {}
    for part in recorded.body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head).group(1).decode()
        parts[name] = (head, content.removesuffix(b"\r\n"))
    return parts


def uploaded(recorded) -> tuple[bytes, bytes]:
    """(part headers, bytes) of the file a provider received."""
    return form_parts(recorded)["file"]


def statuses(attempts: list[dict]) -> list[str]:
    return [a["status"] for a in attempts]


async def read_stream(client, path: str, body: dict) -> tuple[int, bytes, dict, BaseException | None]:
    """(status, the bytes received, headers, the error that ended the transfer early or None)."""
    received = bytearray()
    async with client.stream("POST", path, json=body) as response:
        try:
            async for chunk in response.aiter_bytes():
                received += chunk
        except Exception as error:  # a cut response: the transfer ended without its terminator
            return response.status_code, bytes(received), response.headers, error
    return response.status_code, bytes(received), response.headers, None
