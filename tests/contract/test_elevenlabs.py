"""Contract tests: the official async ElevenLabs SDK (2.78.0) against the emulator."""

from __future__ import annotations

import struct
import time

import httpx
import pytest
from elevenlabs import VoiceSettings
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.errors import UnprocessableEntityError

from tests.emulator.elevenlabs_emu import CHUNK, synthesize

RACHEL = "21m00Tcm4TlvDq8ikWAM"
ADAM = "pNInz6obpgDQGcFmaJgB"
MODEL = "eleven_multilingual_v2"
NO_RETRY = {"max_retries": 0}
WAV = ("a.wav", b"x", "audio/wav")
TRANSPORT_DROPS = (httpx.ReadError, httpx.RemoteProtocolError)


def client(emulator, *, key: str | None = "", timeout: float = 5.0) -> AsyncElevenLabs:
    """The SDK client; ``key=""`` means the emulator's valid key, ``None`` sends none."""
    api_key = emulator.keys["elevenlabs"] if key == "" else key
    return AsyncElevenLabs(api_key=api_key, base_url=emulator.base_urls["elevenlabs"], timeout=timeout)


def tts_call(emulator, text="hi", *, voice=RACHEL, model=MODEL, method="convert", key="", timeout=5.0, **kw):
    """The SDK's async generator of audio chunks for one TTS call (``model=None`` omits model_id)."""
    if model is not None:
        kw["model_id"] = model
    return getattr(client(emulator, key=key, timeout=timeout).text_to_speech, method)(voice, text=text, **kw)


async def speak(emulator, text="hi", **kw) -> bytes:
    return b"".join([chunk async for chunk in tts_call(emulator, text, **kw)])


async def speak_until_error(emulator, text="hi", **kw) -> tuple[bytes, BaseException | None]:
    got: list[bytes] = []
    try:
        async for chunk in tts_call(emulator, text, **kw):
            got.append(chunk)
    except Exception as exc:
        return b"".join(got), exc
    return b"".join(got), None


async def transcribe(emulator, model="scribe_v1", file=WAV, *, key="", client_timeout=5.0, **kw):
    return await client(emulator, key=key, timeout=client_timeout).speech_to_text.convert(
        model_id=model, file=file, **kw
    )


def test_base_url_is_the_prefix_without_v1(emulator):
    assert emulator.base_urls["elevenlabs"].endswith("/elevenlabs")


async def test_unknown_paths_and_methods_answer_like_fastapi(emulator):
    async with httpx.AsyncClient(base_url=emulator.base_urls["elevenlabs"]) as http:
        missing = await http.get("/v1/speech-to-txt")
        wrong = await http.get(f"/v1/text-to-speech/{RACHEL}")

    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})
    assert wrong.headers["allow"] == "POST"


# ---- text to speech -------------------------------------------------------------------------


async def test_convert_returns_deterministic_audio_and_the_request_arrives_intact(emulator):
    settings = VoiceSettings(stability=0.5, similarity_boost=0.75)
    audio = await speak(
        emulator, "Hello there", voice_settings=settings, seed=7, output_format="mp3_44100_128"
    )

    sent = {"stability": 0.5, "similarity_boost": 0.75}
    assert audio == synthesize("Hello there", RACHEL, MODEL, "mp3_44100_128", voice_settings=sent, seed=7)
    assert audio.startswith(b"ID3")
    [request] = emulator.recorded("elevenlabs")
    assert (request.method, request.path) == ("POST", f"/elevenlabs/v1/text-to-speech/{RACHEL}")
    assert request.query == "output_format=mp3_44100_128"
    assert request.headers["xi-api-key"] == "[redacted]"
    assert request.headers["user-agent"] == "elevenlabs/2.78.0"
    body = request.json()
    assert (body["text"], body["model_id"], body["seed"]) == ("Hello there", MODEL, 7)
    assert body["voice_settings"]["stability"] == 0.5
    assert body["voice_settings"]["similarity_boost"] == 0.75


@pytest.mark.parametrize(
    ("output_format", "content_type", "magic"),
    [
        ("mp3_44100_128", "audio/mpeg", b"ID3"),
        ("mp3_22050_32", "audio/mpeg", b"ID3"),
        ("opus_48000_64", "audio/opus", b"OggS"),
        ("pcm_16000", "audio/pcm", b"EMU-TTS"),
        ("ulaw_8000", "audio/basic", b"EMU-TTS"),
        ("alaw_8000", "audio/alaw", b"EMU-TTS"),
        ("wav_24000", "audio/wav", b"RIFF"),
    ],
)
async def test_output_format_decides_content_type_and_bytes(emulator, output_format, content_type, magic):
    tts = client(emulator).text_to_speech.with_raw_response
    async with tts.convert(ADAM, text="format check", output_format=output_format) as response:
        audio = b"".join([chunk async for chunk in response.data])
        assert response.headers["content-type"] == content_type
        assert int(response.headers["content-length"]) == len(audio)

    assert audio.startswith(magic)
    assert audio == synthesize("format check", ADAM, MODEL, output_format)
    assert emulator.recorded("elevenlabs")[0].query == f"output_format={output_format}"


async def test_wav_output_has_a_consistent_riff_header(emulator):
    audio = await speak(emulator, "wave", output_format="wav_16000")

    assert audio[:4] == b"RIFF" and audio[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", audio[4:8])[0] == len(audio) - 8
    assert struct.unpack("<I", audio[24:28])[0] == 16000
    assert struct.unpack("<I", audio[40:44])[0] == len(audio) - 44


async def test_audio_depends_on_text_voice_and_model(emulator):
    base = await speak(emulator, "one")
    assert base == await speak(emulator, "one")
    others = [
        await speak(emulator, "two"),
        await speak(emulator, "one", voice=ADAM),
        await speak(emulator, "one", model="eleven_flash_v2_5"),
    ]
    assert len({base, *others}) == 4


async def test_stream_is_chunked_and_defaults_to_mp3(emulator):
    tts = client(emulator).text_to_speech.with_raw_response
    async with tts.stream(RACHEL, text="streamed speech") as response:
        chunks = [chunk async for chunk in response.data]
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers

    assert len(chunks) > 1
    assert b"".join(chunks) == synthesize("streamed speech", RACHEL, MODEL, "mp3_44100_128")
    [request] = emulator.recorded("elevenlabs")
    assert request.path == f"/elevenlabs/v1/text-to-speech/{RACHEL}/stream"
    assert request.query == ""
    assert "model_id" not in request.json()


@pytest.mark.parametrize(
    ("call", "status", "code", "message"),
    [
        (
            {"voice": "NoSuchVoice123"},
            404,
            "voice_not_found",
            "A voice with the voice_id NoSuchVoice123 was not found.",
        ),
        (
            {"model": "gpt-4o-mini-tts"},
            400,
            "model_not_found",
            "A model with model ID gpt-4o-mini-tts does not exist.",
        ),
        ({"model": "eleven_v3", "text": "x" * 5001}, 400, "text_too_long", None),
        ({"output_format": "flac_44100"}, 400, "invalid_output_format", None),
        ({"key": "xi-wrong"}, 401, "unauthorized", "Invalid API key"),
    ],
)
async def test_request_errors_have_the_real_status_and_body(emulator, call, status, code, message):
    with pytest.raises(ApiError) as info:
        await speak(emulator, **call)

    detail = info.value.body["detail"]
    assert info.value.status_code == status
    assert detail["code"] == code
    assert message is None or detail["message"] == message
    assert info.value.headers["x-trace-id"] == detail["request_id"]
    assert len(emulator.recorded("elevenlabs")) == 1  # TTS is streamed inside the SDK: never retried


async def test_wrong_and_missing_keys_are_401_with_the_legacy_status(emulator):
    with pytest.raises(ApiError) as wrong:
        await speak(emulator, key="xi-wrong")
    with pytest.raises(ApiError) as missing:
        await speak(emulator, key=None)

    assert wrong.value.body["detail"]["status"] == "invalid_api_key"
    assert missing.value.status_code == 401
    assert missing.value.body["detail"]["status"] == "needs_authorization"
    assert "xi-api-key" not in emulator.recorded("elevenlabs")[1].headers


async def test_out_of_range_voice_settings_are_a_422_before_auth(emulator):
    settings = VoiceSettings(stability=2.0, similarity_boost=0.75)
    with pytest.raises(UnprocessableEntityError) as info:
        await speak(emulator, key="wrong", voice_settings=settings)

    [problem] = info.value.body["detail"]
    assert problem["loc"] == ["body", "voice_settings", "stability"]
    assert problem["type"] == "less_than_equal"


# ---- faults on text to speech ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "legacy"),
    [
        ("e429", 429, "too_many_concurrent_requests"),
        ("e500", 500, "internal_error"),
        ("e503", 503, "system_busy"),
        ("e402", 402, "insufficient_credits"),
        ("e403", 403, "missing_permissions"),
        ("ctx", 400, "max_character_limit_exceeded"),
        ("policy", 400, "bad_prompt"),
    ],
)
async def test_error_faults_use_the_real_body_and_are_not_retried(emulator, fault, status, legacy):
    with pytest.raises(ApiError) as info:
        await speak(emulator, model=f"{MODEL}~{fault}", method="stream")

    assert type(info.value) is ApiError  # the SDK maps only 422 to a subclass on TTS
    assert info.value.status_code == status
    assert info.value.body["detail"]["status"] == legacy
    assert set(info.value.body["detail"]) == {"type", "code", "message", "status", "request_id"}
    assert len(emulator.recorded("elevenlabs")) == 1


async def test_rate_limit_carries_retry_after_headers(emulator):
    with pytest.raises(ApiError) as info:
        await speak(emulator, model=f"{MODEL}~e429~ra2")

    assert info.value.headers["retry-after"] == "2"
    assert info.value.headers["retry-after-ms"] == "2000"


async def test_error_fault_with_times_fails_only_the_first_requests(emulator):
    with pytest.raises(ApiError):
        await speak(emulator, model=f"{MODEL}~e503x1")
    assert await speak(emulator, model=f"{MODEL}~e503x1") == synthesize("hi", RACHEL, MODEL)


async def test_reset_drops_the_connection_before_any_header(emulator):
    with pytest.raises(TRANSPORT_DROPS):
        await speak(emulator, model=f"{MODEL}~reset")


async def test_hang_times_out_on_the_client(emulator):
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await speak(emulator, model=f"{MODEL}~hang", timeout=0.3)
    assert time.monotonic() - started < 6  # the 0.3 s timeout, not the hang (which never ends)


async def test_slow_delays_the_first_streamed_chunk(emulator):
    started = time.monotonic()
    async for _chunk in tts_call(emulator, model=f"{MODEL}~slow0.3", method="stream"):
        first = time.monotonic() - started
        break
    assert 0.3 <= first < 6


async def test_slow_convert_beyond_the_client_timeout_times_out(emulator):
    with pytest.raises(httpx.ReadTimeout):
        await speak(emulator, model=f"{MODEL}~slow1", timeout=0.2)


async def test_latency_delays_the_answer(emulator):
    started = time.monotonic()
    await speak(emulator, model=f"{MODEL}~lat250")
    assert time.monotonic() - started >= 0.25


async def test_gap_paces_the_audio_chunks(emulator):
    expected = synthesize("gap", RACHEL, MODEL)
    started = time.monotonic()
    assert await speak(emulator, "gap", model=f"{MODEL}~gap60", method="stream") == expected
    assert time.monotonic() - started >= (-(-len(expected) // CHUNK) - 1) * 0.06


@pytest.mark.parametrize("method", ["stream", "convert"])
async def test_cut_closes_the_audio_stream_after_n_chunks(emulator, method):
    received, exc = await speak_until_error(emulator, "cut me", model=f"{MODEL}~cut2", method=method)

    assert isinstance(exc, TRANSPORT_DROPS)
    assert received == synthesize("cut me", RACHEL, MODEL)[: 2 * CHUNK]


async def test_stall_keeps_the_connection_open_until_the_read_timeout(emulator):
    started = time.monotonic()
    received, exc = await speak_until_error(
        emulator, "stall", model=f"{MODEL}~stall1", method="stream", timeout=0.3
    )

    assert isinstance(exc, httpx.ReadTimeout)
    assert received == synthesize("stall", RACHEL, MODEL)[:CHUNK]
    assert 0.3 <= time.monotonic() - started < 6  # the 0.3 s timeout, not the stall (which never ends)


async def test_nodone_ends_the_stream_without_its_terminator(emulator):
    expected = synthesize("no end", RACHEL, MODEL)
    received, exc = await speak_until_error(emulator, "no end", model=f"{MODEL}~nodone", method="stream")

    assert isinstance(exc, TRANSPORT_DROPS)
    assert expected.startswith(received)
    # The SDK hands out 1024-byte pieces and drops its partial last piece with the connection.
    assert len(received) > len(expected) - CHUNK


async def test_long_makes_longer_audio(emulator):
    audio = await speak(emulator, model=f"{MODEL}~long40")
    assert audio == synthesize("hi", RACHEL, MODEL, tokens=40)
    assert len(audio) > len(synthesize("hi", RACHEL, MODEL)) + 40 * 400


# ---- speech to text -------------------------------------------------------------------------


async def test_speech_to_text_reports_the_upload_and_the_multipart_arrives_intact(emulator):
    result = await transcribe(emulator, file=("speech.wav", b"\x01" * 1234, "audio/wav"), language_code="en")

    assert result.text == "transcript of speech.wav (1234 bytes) [model=scribe_v1 language=en]"
    assert (result.language_code, result.language_probability) == ("en", 1.0)
    assert [w.text for w in result.words if w.type == "word"] == result.text.split(" ")
    assert {w.type for w in result.words} == {"word", "spacing"}
    [request] = emulator.recorded("elevenlabs", "/v1/speech-to-text")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers["xi-api-key"] == "[redacted]"
    assert b'name="model_id"\r\n\r\nscribe_v1\r\n' in request.body
    assert b'name="webhook_metadata"\r\n\r\nnull\r\n' in request.body
    assert b'name="file"; filename="speech.wav"\r\nContent-Type: audio/wav' in request.body


async def test_speech_to_text_without_language_detects_english(emulator):
    result = await transcribe(emulator, "scribe_v2", ("a.mp3", b"abc", "audio/mpeg"))

    assert result.text == "transcript of a.mp3 (3 bytes) [model=scribe_v2 language=-]"
    assert result.language_code == "eng"


async def test_speech_to_text_of_bare_bytes_uses_httpx_default_filename(emulator):
    result = await transcribe(emulator, file=b"12345")
    assert result.text.startswith("transcript of upload (5 bytes)")


async def test_speech_to_text_refuses_a_tts_model_and_a_wrong_key(emulator):
    with pytest.raises(ApiError) as model:
        await transcribe(emulator, MODEL)
    with pytest.raises(ApiError) as key:
        await transcribe(emulator, key="nope")

    assert model.value.status_code == 400
    assert key.value.status_code == 401
    assert key.value.body["detail"]["status"] == "invalid_api_key"
    assert len(emulator.recorded("elevenlabs")) == 2  # 4xx other than 408/409/429 are not retried


async def test_speech_to_text_rate_limit_without_retries(emulator):
    with pytest.raises(ApiError) as info:
        await transcribe(emulator, "scribe_v1~e429~ra1", request_options=NO_RETRY)

    assert info.value.status_code == 429
    assert info.value.headers["retry-after"] == "1"
    assert len(emulator.recorded("elevenlabs")) == 1


async def test_sdk_retry_of_speech_to_text_drops_the_form_fields(emulator):
    """elevenlabs 2.78.0 retries JSON calls, but its retry omits ``data=``: model_id is lost -> 422."""
    with pytest.raises(UnprocessableEntityError) as info:
        await transcribe(emulator, "scribe_v1~e503x1~ra1")

    assert info.value.body["detail"][0]["loc"] == ["body", "model_id"]
    first, retry = emulator.recorded("elevenlabs")
    assert b'name="model_id"' in first.body
    assert b'name="model_id"' not in retry.body and b'name="file"' in retry.body
    assert retry.at - first.at >= 0.9


async def test_speech_to_text_hang_and_reset(emulator):
    with pytest.raises(httpx.ReadTimeout):
        await transcribe(emulator, "scribe_v1~hang", client_timeout=0.3)
    with pytest.raises(TRANSPORT_DROPS):
        await transcribe(emulator, "scribe_v1~reset", request_options=NO_RETRY)


async def test_speech_to_text_slow_and_long(emulator):
    started = time.monotonic()
    result = await transcribe(emulator, "scribe_v1~slow0.2~long5")

    assert time.monotonic() - started >= 0.2
    plain = "transcript of a.wav (1 bytes) [model=scribe_v1 language=-]"
    assert result.text.startswith(plain + " ")
    assert len(result.text.split(" ")) == len(plain.split(" ")) + 5


# ---- voices and models ----------------------------------------------------------------------


async def test_voices_list_has_the_premade_voices_with_their_real_ids(emulator):
    result = await client(emulator).voices.get_all()

    ids = {voice.name: voice.voice_id for voice in result.voices}
    assert ids["Rachel"] == RACHEL and ids["Adam"] == ADAM
    assert ids["Antoni"] == "ErXwobaYiN019PkySvjV"
    assert ids["Bella"] == "EXAVITQu4vr4xnSDxMaL"
    assert ids["Domi"] == "AZnzlk1XvdvUeBnXmlld"
    assert ids["Elli"] == "MF3mGyEYCl7XYWbV9V6O"
    assert ids["Josh"] == "TxGEqnHWrfWFTfGW9XjX"
    assert ids["Sam"] == "yoZ06aMxZJJ28mfd3POQ"
    assert {voice.category for voice in result.voices} == {"premade"}
    assert result.voices[0].labels["gender"] == "female"
    assert emulator.recorded("elevenlabs")[0].path == "/elevenlabs/v1/voices"


async def test_voices_list_is_public_but_a_wrong_key_is_refused(emulator):
    assert (await client(emulator, key=None).voices.get_all()).voices
    with pytest.raises(ApiError) as info:
        await client(emulator, key="bad").voices.get_all(request_options=NO_RETRY)
    assert info.value.status_code == 401


async def test_voice_search_v2_filters_and_pages(emulator):
    eleven = client(emulator)
    found = await eleven.voices.search(search="ADAM")
    assert [voice.voice_id for voice in found.voices] == [ADAM]
    assert found.total_count == 1 and found.has_more is False
    request = emulator.recorded("elevenlabs")[0]
    assert request.path == "/elevenlabs/v2/voices" and request.query == "search=ADAM"

    first = await eleven.voices.search(page_size=5)
    second = await eleven.voices.search(page_size=5, next_page_token=first.next_page_token)
    assert first.has_more and len(first.voices) == 5
    assert {v.voice_id for v in first.voices}.isdisjoint(v.voice_id for v in second.voices)


async def test_get_one_voice_and_an_unknown_one(emulator):
    eleven = client(emulator)
    assert (await eleven.voices.get(RACHEL)).name == "Rachel"
    with pytest.raises(ApiError) as info:
        await eleven.voices.get("missing", request_options=NO_RETRY)
    assert info.value.status_code == 404
    assert info.value.body["detail"]["status"] == "voice_not_found"


async def test_models_list(emulator):
    models = {model.model_id: model for model in await client(emulator).models.list()}
    assert models[MODEL].can_do_text_to_speech is True
    assert models["eleven_v3"].maximum_text_length_per_request == 5000
