"""Speech and transcription routes through the audio endpoints (issue #14)."""

import base64

import pytest

from tests.agent.helpers import statuses
from tests.routes.test_chat_routes import manager  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(24) + b"data" + bytes(4) + bytes(3200)


async def speech_route(manager, name="voice"):  # noqa: F811
    body = {"name": name, "kind": "speech", "entries": [
        {"provider_uid": "openai", "model": "tts-1~e503", "settings": {"voice": "alloy"}},
        {"provider_uid": "elevenlabs", "model": "eleven_multilingual_v2",
         "settings": {"voice": "21m00Tcm4TlvDq8ikWAM", "output_format": "mp3_22050_32"}},
    ]}
    response = await manager.post("/routes", json=body)
    assert response.status_code == 201, response.text


async def test_speech_over_a_route_falls_over_with_each_entrys_voice(user, manager, configs, emulator):  # noqa: F811
    await speech_route(manager)
    for path in ("/audio/speak", "/audio/speak_stream"):
        emulator.reset()
        response = await user.post(path, json={"route": "voice", "text": "hello there"})
        assert response.status_code == 200, response.text
        assert response.headers["x-provider-uid"] == "elevenlabs" and response.content
        assert "openai/tts-1~e503=error" in response.headers["x-attempts"]
        (sent,) = emulator.recorded("elevenlabs")
        assert "21m00Tcm4TlvDq8ikWAM" in sent.path and "mp3_22050_32" in sent.query


async def test_a_speech_entry_needs_a_voice_and_a_speech_provider(manager, configs):  # noqa: F811
    missing = {"name": "v", "kind": "speech", "entries": [{"provider_uid": "openai", "model": "tts-1"}]}
    response = await manager.post("/routes", json=missing)
    assert response.status_code == 400 and "voice" in response.json()["detail"]
    wrong = {"name": "v", "kind": "speech", "entries": [{"provider_uid": "anthropic", "model": "c",
                                                          "settings": {"voice": "x"}}]}
    response = await manager.post("/routes", json=wrong)
    assert response.status_code == 400 and "cannot serve a speech route" in response.json()["detail"]


async def transcription_route(manager):  # noqa: F811
    body = {"name": "scribe", "kind": "transcription", "entries": [
        {"provider_uid": "groq", "model": "whisper-large-v3~e500"},
        {"provider_uid": "openai", "model": "whisper-1", "settings": {"language": "fr"}},
    ]}
    response = await manager.post("/routes", json=body)
    assert response.status_code == 201, response.text


async def test_transcription_over_a_route_multipart_and_json(user, manager, configs):  # noqa: F811
    await transcription_route(manager)
    response = await user.post("/audio/transcribe", data={"route": "scribe"},
                               files={"file": ("hello.wav", WAV, "audio/wav")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provider_uid"] == "openai" and statuses(answer["attempts"]) == ["error", "ok"]
    assert "language=fr" in answer["text"] and "hello.wav" in answer["text"]
    body = {"route": "scribe", "language": "de",
            "file": ["hello.wav", base64.b64encode(WAV).decode(), "audio/wav"]}
    answer = (await user.post("/audio/transcribe_json", json=body)).json()
    assert answer["provider_uid"] == "openai" and "language=de" in answer["text"]


@pytest.mark.parametrize("form", [{"route": "scribe", "provider_uid": "openai", "model": "whisper-1"},
                                  {"provider_uid": "openai"}])
async def test_the_form_takes_a_route_or_a_provider_and_model(user, manager, configs, form):  # noqa: F811
    await transcription_route(manager)
    response = await user.post("/audio/transcribe", data=form, files={"file": ("a.wav", WAV, "audio/wav")})
    assert response.status_code == 400 and "route" in response.json()["detail"]


async def test_a_chat_route_is_not_a_speech_route(user, manager, configs):  # noqa: F811
    await manager.post("/routes", json={"name": "talk", "kind": "chat",
                                        "entries": [{"provider_uid": "openai", "model": "m"}]})
    response = await user.post("/audio/speak", json={"route": "talk", "text": "hi"})
    assert response.status_code == 404 and "no speech route named 'talk'" in response.json()["detail"]
