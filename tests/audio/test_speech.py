"""Text to speech through the HTTP API and the real SDKs, against the emulator: what each provider
receives, the audio and headers the client gets back, streamed and whole."""

import json
import time

import pytest

from tests.audio.helpers import ADAM, RACHEL, read_stream, speak
from tests.emulator.elevenlabs_emu_wire import synthesize
from tests.emulator.openai_emu_audio import SPEECH_TYPES, speech_bytes

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/audio/speak", "/audio/speak_stream"]


def expected(provider: str, text: str = "hello there", fmt: str = "mp3", **kw) -> bytes:
    """The audio the emulator makes for what the proxy should have asked."""
    if provider == "openai":
        return speech_bytes(text, "alloy", "tts-1", fmt, kw.get("speed", 1.0), kw.get("instructions", ""))
    return synthesize(text, RACHEL, "eleven_multilingual_v2", fmt, voice_settings=kw.get("voice_settings"))


async def fetch(user, path: str, body: dict):
    if path == "/audio/speak":
        response = await user.post(path, json=body)
        return response.status_code, response.content, response.headers
    status, audio, headers, error = await read_stream(user, path, body)
    assert error is None
    return status, audio, headers


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", ["openai", "elevenlabs"])
async def test_speech_comes_back_byte_for_byte_with_who_served_it(user, configs, emulator, provider, path):
    status, audio, headers = await fetch(user, path, speak(provider))
    assert status == 200
    native = "mp3" if provider == "openai" else "mp3_44100_128"
    assert audio == expected(provider, fmt=native)
    assert headers["content-type"] == "audio/mpeg"
    assert headers["X-Provider-UID"] == provider
    assert headers["X-Model"] == speak(provider)["model"]
    assert headers["X-Attempts"] == f"{provider}/{speak(provider)['model']}=" + ("ok" if path == "/audio/speak" else "streaming")
    assert len(headers["X-Request-ID"]) == 32
    if path == "/audio/speak":
        assert headers["content-length"] == str(len(audio))
    else:
        assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    tts = [r for r in emulator.recorded(provider) if "/speech" in r.path or "text-to-speech" in r.path]
    assert len(tts) == 1


@pytest.mark.parametrize("fmt", sorted(SPEECH_TYPES))
async def test_openai_output_formats_and_their_content_types(user, configs, emulator, fmt):
    response = await user.post("/audio/speak", json=speak("openai", output_format=fmt))
    assert response.status_code == 200
    assert response.headers["content-type"] == SPEECH_TYPES[fmt]
    assert response.content == expected("openai", fmt=fmt)
    assert emulator.recorded("openai")[0].json()["response_format"] == fmt


@pytest.mark.parametrize(
    ("fmt", "native", "content_type"),
    [("mp3", "mp3_44100_128", "audio/mpeg"), ("wav", "wav_24000", "audio/wav"), ("opus", "opus_48000_128", "audio/opus"),
     ("pcm", "pcm_24000", "audio/pcm"), ("mp3_22050_32", "mp3_22050_32", "audio/mpeg"), ("ulaw_8000", "ulaw_8000", "audio/basic")],
)
async def test_elevenlabs_output_formats_are_mapped_to_its_own_names(user, configs, emulator, fmt, native, content_type):
    response = await user.post("/audio/speak", json=speak("elevenlabs", output_format=fmt))
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == expected("elevenlabs", fmt=native)
    assert emulator.recorded("elevenlabs", "text-to-speech")[0].query == f"output_format={native}"


@pytest.mark.parametrize(("provider", "fmt"), [("elevenlabs", "aac"), ("elevenlabs", "flac"), ("openai", "mp3_22050_32")])
async def test_a_format_the_provider_cannot_make_is_refused_before_any_call(user, configs, emulator, provider, fmt):
    for path in PATHS:
        response = await user.post(path, json=speak(provider, output_format=fmt))
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert fmt in response.json()["detail"] and provider in response.json()["detail"]
    assert emulator.recorded() == []


async def test_openai_gen_config_speed_instructions_and_provider_options(user, configs, emulator):
    gen = {"speed": 1.5, "instructions": "cheerful", "provider_options": {"stream_format": "audio"}}
    response = await user.post("/audio/speak", json=speak("openai", gen_config=gen))
    assert response.status_code == 200
    assert response.content == expected("openai", speed=1.5, instructions="cheerful")
    sent = emulator.recorded("openai")[0].json()
    assert (sent["speed"], sent["instructions"], sent["stream_format"]) == (1.5, "cheerful", "audio")


async def test_elevenlabs_gen_config_voice_settings_speed_seed_and_language(user, configs, emulator):
    gen = {"speed": 1.1, "voice_settings": {"stability": 0.3, "similarity_boost": 0.8, "use_speaker_boost": True},
           "seed": 42, "language_code": "en", "instructions": "ignored: OpenAI only",
           "provider_options": {"apply_text_normalization": "off"}}
    response = await user.post("/audio/speak", json=speak("elevenlabs", gen_config=gen))
    assert response.status_code == 200, response.text
    sent = emulator.recorded("elevenlabs", "text-to-speech")[0].json()
    assert sent["voice_settings"] == {"stability": 0.3, "similarity_boost": 0.8, "use_speaker_boost": True, "speed": 1.1}
    assert (sent["seed"], sent["language_code"], sent["apply_text_normalization"]) == (42, "en", "off")
    assert "instructions" not in json.dumps(sent)
    assert response.content == synthesize("hello there", RACHEL, "eleven_multilingual_v2", "mp3_44100_128",
                                          voice_settings=sent["voice_settings"], language_code="en", seed=42)


async def test_an_elevenlabs_voice_name_is_looked_up_once_per_config(user, configs, emulator):
    for voice in ["Rachel", "rachel", "Adam", "Rachel"]:
        response = await user.post("/audio/speak", json={**speak("elevenlabs"), "voice": voice})
        assert response.status_code == 200, response.text
    spoken = [r.path.rsplit("/", 1)[-1] for r in emulator.recorded("elevenlabs", "text-to-speech")]
    assert spoken == [RACHEL, RACHEL, ADAM, RACHEL]
    assert len(emulator.recorded("elevenlabs", "/voices")) == 2  # Rachel, then Adam; never again

    await configs("elevenlabs")  # a changed config is a new adapter: names are looked up afresh
    assert (await user.post("/audio/speak", json=speak("elevenlabs"))).status_code == 200
    assert len(emulator.recorded("elevenlabs", "/voices")) == 3


async def test_an_elevenlabs_voice_id_needs_no_lookup(user, configs, emulator):
    response = await user.post("/audio/speak", json={**speak("elevenlabs"), "voice": ADAM})
    assert response.status_code == 200
    assert emulator.recorded("elevenlabs", "/voices") == []


async def test_an_unknown_elevenlabs_voice_name_is_a_400_without_speech(user, configs, emulator):
    for path in PATHS:
        response = await user.post(path, json={**speak("elevenlabs"), "voice": "Nobody Here"})
        assert response.status_code == 400
        assert "Nobody Here" in response.json()["detail"] and "elevenlabs" in response.json()["detail"]
    assert emulator.recorded("elevenlabs", "text-to-speech") == []


async def test_the_stream_delivers_audio_as_the_provider_produces_it(user, configs, emulator):
    # 20 words: 20 x 0.2 s x 48000 bytes/s = 47 chunks of 4096 bytes, 30 ms apart: the emulator spends
    # at least 46 x 0.03 = 1.38 s between the first and the last. A proxy that buffered the answer would
    # hand them over together; one that streams hands the first over while the rest are being made.
    # Load only stretches the gaps (sleeps never run early), and how long the request takes before
    # its first byte does not count.
    body = speak("openai", model="tts-1~gap30", text=" ".join(["word"] * 20))
    started = time.monotonic()
    arrivals = []
    async with user.stream("POST", "/audio/speak_stream", json=body) as response:
        async for chunk in response.aiter_bytes():
            arrivals.append((time.monotonic() - started, len(chunk)))
    total = time.monotonic() - started
    assert response.status_code == 200
    assert sum(size for _, size in arrivals) == len(speech_bytes(" ".join(["word"] * 20), "alloy", "tts-1"))
    assert total - arrivals[0][0] > 0.7, arrivals  # the first bytes long before the last
    assert len(arrivals) > 20


async def test_a_provider_without_speech_is_refused_before_any_call(user, configs, emulator):
    for path in PATHS:
        response = await user.post(path, json={"provider_uid": "anthropic", "model": "claude", "text": "hi", "voice": "x"})
        assert response.status_code == 400
        assert "anthropic" in response.json()["detail"] and "cannot synthesize speech" in response.json()["detail"]
    assert emulator.recorded() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "tts-1", "text": "hi", "voice": "alloy"}, "provider_uid"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "hi"}, "voice"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "   ", "voice": "alloy"}, "text"),
        ({"provider_uid": "openai", "model": "tts 1\nX-Evil: 1", "text": "hi", "voice": "alloy"}, "model"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "hi", "voice": "alloy", "output_format": "MP3!"}, "output_format"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "hi", "voice": "alloy", "gen_config": {"speed": 9}}, "gen_config.speed"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "hi", "voice": "alloy", "gen_config": {"pitch": 1}}, "gen_config.pitch"),
        ({"provider_uid": "openai", "model": "tts-1", "text": "hi", "voice": "alloy", "extra": 1}, "extra"),
        ({"requests": [], "strategy": "sequential"}, "requests"),
        ({"requests": [{"provider_uid": "openai", "model": "tts-1", "text": "hi", "voice": "alloy"}], "strategy": "random"},
         "strategy"),
    ],
)
async def test_invalid_speech_requests_are_400s_naming_the_field(user, configs, emulator, body, field):
    for path in PATHS:
        response = await user.post(path, json=body)
        assert response.status_code == 400
        assert field in response.json()["detail"]
    assert emulator.recorded() == []


async def test_speech_needs_a_use_key(http, make_key, configs):
    manage_only = {"Authorization": f"Bearer {await make_key('manage')}"}
    for path in PATHS:
        assert (await http.post(path, json=speak("openai"))).status_code == 401
        assert (await http.post(path, json=speak("openai"), headers=manage_only)).status_code == 403
