"""What the request log keeps of audio calls: usage, who served, and a stream cut after its first byte."""

import asyncio

import pytest

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.audio.helpers import read_stream, speak, transcribe, wav_file

pytestmark = pytest.mark.django_db(transaction=True)


async def logged(endpoint: str) -> RequestLog:
    await asyncio.to_thread(writer.flush)
    return await RequestLog.objects.filter(endpoint=endpoint).order_by("-id").afirst()


async def test_speech_logs_characters_and_bytes(user, configs):
    response = await user.post("/audio/speak", json=speak("openai", text="hello there"))
    log = await logged("POST /audio/speak")
    assert (log.provider_uid, log.model, log.status, log.outcome) == ("openai", "tts-1", 200, "ok")
    assert (log.characters, log.audio_bytes) == (11, len(response.content))
    assert log.request_id == response.headers["X-Request-ID"]


async def test_a_streamed_speech_logs_what_was_sent(user, configs):
    status, audio, _headers, error = await read_stream(user, "/audio/speak_stream", speak("elevenlabs"))
    assert (status, error) == (200, None)
    log = await logged("POST /audio/speak_stream")
    assert (log.provider_uid, log.outcome, log.characters, log.audio_bytes) == ("elevenlabs", "done", 11, len(audio))
    assert log.first_chunk_ms is not None


async def test_a_stream_cut_after_its_first_byte_is_logged_as_an_error(user, configs):
    body = speak("openai", model="tts-1~cut2", text=" ".join(["word"] * 12))
    _status, audio, _headers, error = await read_stream(user, "/audio/speak_stream", body)
    assert error is not None
    log = await logged("POST /audio/speak_stream")
    assert (log.status, log.outcome, log.audio_bytes) == (200, "error", len(audio))
    assert "openai/tts-1~cut2" in log.error and "connection to the provider failed" in log.error


async def test_transcription_logs_the_upload_and_its_duration(user, configs):
    wav = wav_file(0.5)
    await user.post("/audio/transcribe_json", json=transcribe("groq", "whisper-large-v3", wav))
    log = await logged("POST /audio/transcribe_json")
    assert (log.provider_uid, log.audio_bytes, log.audio_seconds) == ("groq", len(wav), 0.5)
