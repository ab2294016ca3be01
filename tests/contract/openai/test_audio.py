"""Contract tests: the official async OpenAI SDK against the emulator's speech and transcription."""

from __future__ import annotations

import io
import time
import wave

import httpx2
import openai
import pytest
from openai.types import audio as atypes

from tests.emulator.openai_emu_audio import SPEECH_TYPES, speech_bytes


@pytest.fixture
async def client(emulator):
    async with openai.AsyncOpenAI(
        api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"], max_retries=0, timeout=5
    ) as sdk:
        yield sdk


def wav_file(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x01\x00" * int(seconds * rate))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", sorted(SPEECH_TYPES))
async def test_speech_bytes_and_content_type(emulator, client, fmt):
    response = await client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", input="hello world", voice="alloy", response_format=fmt
    )
    audio = response.content
    assert audio == speech_bytes("hello world", "alloy", "gpt-4o-mini-tts", fmt)
    assert response.headers["content-type"] == SPEECH_TYPES[fmt]
    assert response.headers.get("transfer-encoding") == "chunked"  # the real endpoint streams too
    (recorded,) = emulator.recorded("openai", "/audio/speech")
    assert recorded.headers["accept"] == "application/octet-stream"
    assert recorded.json() == {
        "model": "gpt-4o-mini-tts",
        "input": "hello world",
        "voice": "alloy",
        "response_format": fmt,
    }


async def test_speech_wav_is_a_valid_riff_file(client):
    audio = await client.audio.speech.create(
        model="tts-1", input="one two three", voice="nova", response_format="wav"
    )
    with wave.open(io.BytesIO(audio.content)) as parsed:
        assert (parsed.getframerate(), parsed.getsampwidth(), parsed.getnchannels()) == (24000, 2, 1)
        assert parsed.getnframes() == 24000 * 0.2 * 3  # 0.2 s per word


async def test_speech_depends_on_voice_speed_and_instructions(client):
    base = (await client.audio.speech.create(model="tts-1", input="hi", voice="alloy")).content
    assert (await client.audio.speech.create(model="tts-1", input="hi", voice="echo")).content != base
    slower = await client.audio.speech.create(model="tts-1", input="hi", voice="alloy", speed=0.5)
    assert len(slower.content) > len(base)
    told = await client.audio.speech.create(
        model="gpt-4o-mini-tts", input="hi", voice="alloy", instructions="whisper"
    )
    assert told.content == speech_bytes("hi", "alloy", "gpt-4o-mini-tts", "mp3", 1.0, "whisper")


async def test_speech_streams_in_chunks(client):
    text = " ".join(["word"] * 10)
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", input=text, voice="alloy"
    ) as response:
        chunks = [chunk async for chunk in response.iter_bytes()]
    assert len(chunks) > 1 and b"".join(chunks) == speech_bytes(text, "alloy", "tts-1")


async def test_speech_sse_stream_format(client):
    response = await client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", input="hi", voice="alloy", stream_format="sse"
    )
    body = response.content.decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert '"type":"speech.audio.delta"' in body and body.rstrip().endswith("}")
    assert '"type":"speech.audio.done"' in body


async def test_speech_faults(emulator, client):
    with pytest.raises(openai.RateLimitError) as error:
        await client.audio.speech.create(model="tts-1~e429~ra3", input="x", voice="alloy")
    assert error.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.BadRequestError) as error:
        await client.audio.speech.create(model="tts-1~policy", input="x", voice="alloy")
    assert error.value.code == "invalid_prompt"
    text = " ".join(["word"] * 10)
    received = 0
    with pytest.raises(httpx2.ReadError):  # with_streaming_response hands out the transport's own error
        async with client.audio.speech.with_streaming_response.create(
            model="tts-1~cut1", input=text, voice="alloy"
        ) as response:
            async for chunk in response.iter_bytes():
                received += len(chunk)
    assert received == 4096
    with pytest.raises(openai.APIConnectionError):  # a buffered call wraps it
        await client.audio.speech.create(model="tts-1~cut1", input=text, voice="alloy")
    started = time.monotonic()
    await client.audio.speech.create(model="tts-1~slow0.2", input="x", voice="alloy")
    assert time.monotonic() - started >= 0.2
    async with openai.AsyncOpenAI(
        api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"], max_retries=0, timeout=0.3
    ) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.audio.speech.create(model="tts-1~stall1", input=text, voice="alloy")
        with pytest.raises(openai.APITimeoutError):
            await impatient.audio.speech.create(model="tts-1~hang", input="x", voice="alloy")


async def test_speech_missing_voice_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        await client.audio.speech.create(model="tts-1", input="x", voice="")
    assert error.value.param == "voice"


async def test_transcription_json_reports_the_upload(emulator, client):
    audio = wav_file(1.0)
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", audio, "audio/wav"), language="fr", prompt="names"
    )
    assert isinstance(result, atypes.Transcription)
    assert (
        result.text
        == f"transcript of speech.wav ({len(audio)} bytes) [model=whisper-1 language=fr prompt=names]"
    )
    assert result.usage.type == "duration" and result.usage.seconds == 1
    (recorded,) = emulator.recorded("openai", "/audio/transcriptions")
    assert recorded.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert audio in recorded.body and b'filename="speech.wav"' in recorded.body


async def test_transcription_token_usage_for_gpt4o_models(client):
    result = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.mp3", b"\xff\xfb" * 100)
    )
    assert result.text.startswith("transcript of a.mp3 (200 bytes) [model=gpt-4o-transcribe language=en]")
    assert result.usage.type == "tokens" and result.usage.output_tokens == len(result.text.split())


async def test_transcription_text_srt_vtt(client):
    upload = ("s.wav", wav_file(0.5), "audio/wav")
    text = await client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="text")
    assert isinstance(text, str) and text.startswith("transcript of s.wav (")
    srt = await client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:00,500\ntranscript of s.wav")
    vtt = await client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.500\n")


async def test_transcription_verbose_json_segments_and_words(client):
    upload = ("s.wav", wav_file(2.0), "audio/wav")
    both = await client.audio.transcriptions.create(
        model="whisper-1",
        file=upload,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert isinstance(both, atypes.TranscriptionVerbose)
    assert both.language == "english" and both.duration == 2.0
    assert both.segments[0].text.strip() == both.text and both.segments[0].end == 2.0
    assert [w.word for w in both.words] == both.text.split() and both.words[-1].end == 2.0
    default = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="verbose_json"
    )
    assert default.segments and default.words is None
    words_only = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert words_only.segments is None and words_only.words


async def test_transcription_stream(client):
    stream = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", b"abc"), stream=True
    )
    events = [event async for event in stream]
    assert {type(e) for e in events[:-1]} == {atypes.TranscriptionTextDeltaEvent}
    assert isinstance(events[-1], atypes.TranscriptionTextDoneEvent)
    assert "".join(e.delta for e in events[:-1]) == events[-1].text
    assert events[-1].usage.output_tokens == len(events[-1].text.split())


async def test_transcription_stream_faults(client):
    upload = ("a.wav", b"abc")
    stream = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe~e500~cut2", file=upload, stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as error:
        async for event in stream:
            seen.append(event)
    assert type(error.value) is openai.APIError and len(seen) == 2
    stream = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe~nodone", file=upload, stream=True
    )
    assert all(e.type == "transcript.text.delta" for e in [event async for event in stream])


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK deprecates translations
async def test_translation(client):
    result = await client.audio.translations.create(model="whisper-1", file=("de.wav", b"abcd"))
    assert result.text == "translation of de.wav (4 bytes) [model=whisper-1 language=en]"


async def test_transcription_faults(emulator, client):
    with pytest.raises(openai.InternalServerError):
        await client.audio.transcriptions.create(model="whisper-1~e500", file=("a.wav", b"x"))
    with pytest.raises(openai.AuthenticationError):
        async with openai.AsyncOpenAI(
            api_key="sk-nope", base_url=emulator.base_urls["openai"], max_retries=0
        ) as bad:
            await bad.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"x"))
    with pytest.raises(openai.APIConnectionError):
        await client.audio.transcriptions.create(model="whisper-1~reset", file=("a.wav", b"x"))
    long = await client.audio.transcriptions.create(model="whisper-1~long5", file=("a.wav", b"x"))
    assert (
        len(long.text.split())
        == len("transcript of a.wav (1 bytes) [model=whisper-1 language=en]".split()) + 5
    )
