"""Speech to text through the HTTP API and the real SDKs, against the emulator: the upload reaches
each provider byte for byte, the answer has one shape whoever served it, bad uploads never leave."""

import base64
import json

import pytest

from tests.audio.helpers import STT, b64_file, form_parts, transcribe, uploaded, wav_file

pytestmark = pytest.mark.django_db(transaction=True)

WAV = wav_file(0.5)


def upstream(emulator, provider):
    (recorded,) = emulator.recorded(provider, "speech-to-text" if provider == "elevenlabs" else "/transcriptions")
    return recorded


async def send(user, endpoint: str, provider: str, model: str, data: bytes = WAV, name: str = "speech.wav",
               mime: str = "audio/wav", language: str | None = None, gen: dict | None = None):
    """The same transcription through either endpoint."""
    if endpoint == "json":
        body = transcribe(provider, model, file=b64_file(data, name, mime))
        body.update({k: v for k, v in {"language": language, "gen_config": gen}.items() if v is not None})
        return await user.post("/audio/transcribe_json", json=body)
    form = {"provider_uid": provider, "model": model}
    form.update({k: v for k, v in {"language": language, "gen_config": json.dumps(gen) if gen else None}.items() if v})
    return await user.post("/audio/transcribe", data=form, files={"file": (name, data, mime)})


@pytest.mark.parametrize("endpoint", ["json", "multipart"])
@pytest.mark.parametrize(("provider", "model"), STT)
async def test_the_provider_receives_the_file_byte_for_byte(user, configs, emulator, provider, model, endpoint):
    response = await send(user, endpoint, provider, model, language="fr")
    assert response.status_code == 200, response.text
    head, content = uploaded(upstream(emulator, provider))
    assert content == WAV
    assert b'filename="speech.wav"' in head and b"Content-Type: audio/wav" in head
    answer = response.json()
    assert answer["text"] == f"transcript of speech.wav ({len(WAV)} bytes) [model={model} language=fr]"
    assert (answer["provider_uid"], answer["model"], answer["language"]) == (provider, model, "fr")
    assert answer["request_id"] == response.headers["X-Request-ID"]
    assert [a["status"] for a in answer["attempts"]] == ["ok"]
    assert "segments" not in answer and "words" not in answer  # not asked for


@pytest.mark.parametrize(
    ("provider", "model", "duration"),
    # Whisper reads the WAV header (0.5 s); ElevenLabs' emulator says half a second per word.
    [("openai", "whisper-1", 0.5), ("groq", "whisper-large-v3", 0.5), ("elevenlabs", "scribe_v1", 3.5),
     ("openai", "gpt-4o-transcribe", None)],
)
async def test_language_and_duration_have_one_form_whoever_serves(user, configs, emulator, provider, model, duration):
    response = await send(user, "json", provider, model)  # no language given: detected
    answer = response.json()
    # Whisper says "english" (Groq: "English"), ElevenLabs "eng"; gpt-4o transcription says nothing.
    assert answer["language"] == (None if model == "gpt-4o-transcribe" else "en")
    assert answer["duration"] == duration
    sent = form_parts(upstream(emulator, provider))
    if provider != "elevenlabs":
        # gpt-4o transcription refuses verbose_json: it gets the default, json.
        asked = sent["response_format"][1] if "response_format" in sent else b"json"
        assert asked == (b"json" if model == "gpt-4o-transcribe" else b"verbose_json")


@pytest.mark.parametrize(("provider", "model"), [("openai", "whisper-1"), ("groq", "whisper-large-v3")])
@pytest.mark.parametrize("asked", [["segment"], ["word"], ["segment", "word"]])
async def test_whisper_segments_and_words_when_asked(user, configs, emulator, provider, model, asked):
    response = await send(user, "multipart", provider, model, gen={"timestamp_granularities": asked})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert ("segments" in answer) == ("segment" in asked)
    assert ("words" in answer) == ("word" in asked)
    if "segment" in asked:
        assert answer["segments"] == [{"start": 0.0, "end": 0.5, "text": answer["text"]}]
    if "word" in asked:
        assert [w["word"] for w in answer["words"]] == answer["text"].split()
        assert answer["words"][-1]["end"] == 0.5
        granularities = [v for k, (_h, v) in form_parts(upstream(emulator, provider)).items() if "granularities" in k]
        assert granularities


async def test_elevenlabs_gives_words_never_segments(user, configs):
    response = await send(user, "json", "elevenlabs", "scribe_v1", gen={"timestamp_granularities": ["segment", "word"]})
    answer = response.json()
    assert "segments" not in answer
    assert [w["word"] for w in answer["words"]] == answer["text"].split(" ")
    assert answer["words"][1] == {"start": 0.5, "end": 0.9, "word": "of"}


@pytest.mark.parametrize(("provider", "model"), [("openai", "whisper-1"), ("groq", "whisper-large-v3")])
async def test_prompt_temperature_and_provider_options_reach_whisper(user, configs, emulator, provider, model):
    # Groq documents no field beyond those we map: its allow-list is empty.
    options = {"include[]": "logprobs"} if provider == "openai" else {}
    gen = {"prompt": "Qalby", "temperature": 0.2, "provider_options": options}
    response = await send(user, "json", provider, model, gen=gen)
    assert response.status_code == 200
    assert "prompt=Qalby temperature=0.2" in response.json()["text"]
    sent = form_parts(upstream(emulator, provider))
    assert {k: sent[k][1].decode() for k in options} == options


async def test_elevenlabs_temperature_and_provider_options(user, configs, emulator):
    gen = {"temperature": 0.3, "provider_options": {"diarize": "true"}}
    response = await send(user, "json", "elevenlabs", "scribe_v1", language="de", gen=gen)
    assert response.status_code == 200
    sent = form_parts(upstream(emulator, "elevenlabs"))
    assert (sent["temperature"][1], sent["diarize"][1], sent["language_code"][1]) == (b"0.3", b"true", b"de")
    assert sent["model_id"][1] == b"scribe_v1"


async def test_a_large_multipart_upload_arrives_whole(user, configs, emulator):
    # Above FILE_UPLOAD_MAX_MEMORY_SIZE (2 MiB): Django spools it to disk, the SDK reads it from there.
    big = wav_file(100.0)  # 3.2 MB
    response = await send(user, "multipart", "groq", "whisper-large-v3", data=big, name="long talk.wav")
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == 100.0
    assert uploaded(upstream(emulator, "groq"))[1] == big


async def test_an_unnamed_mime_type_is_taken_from_the_file_name(user, configs, emulator):
    # curl -F file=@speech.wav sends application/octet-stream: the .wav says what it is.
    response = await send(user, "multipart", "openai", "whisper-1", mime="application/octet-stream")
    assert response.status_code == 200
    assert b"Content-Type: audio/x-wav" in uploaded(upstream(emulator, "openai"))[0]


@pytest.mark.parametrize("endpoint", ["json", "multipart"])
async def test_a_provider_without_transcription_is_refused_before_any_call(user, configs, emulator, endpoint):
    response = await send(user, endpoint, "anthropic", "claude")
    assert response.status_code == 400
    assert "cannot transcribe audio" in response.json()["detail"]
    assert emulator.recorded() == []


# ---- bad uploads: 4xx before any provider call ---------------------------------------------------


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (["a.wav", "not base64!!", "audio/wav"], "not valid base64"),
        (["a.wav", "QUJ", "audio/wav"], "not valid base64"),  # bad padding
        (["a.wav", "", "audio/wav"], "empty"),
        (["a.png", base64.b64encode(b"\x89PNG").decode(), "image/png"], "must be audio"),
        (["a.bin", base64.b64encode(WAV).decode(), "application/octet-stream"], "must be audio"),
        (["noext", base64.b64encode(WAV).decode(), ""], "no mime type"),
        (["a.wav", base64.b64encode(WAV).decode(), "audio"], "not a mime type"),
        (["", base64.b64encode(WAV).decode(), "audio/wav"], "name"),
        (["a.wav", base64.b64encode(WAV).decode()], '["name", "<base64'),
    ],
)
async def test_bad_base64_uploads_are_400s(user, configs, emulator, file, message):
    response = await user.post("/audio/transcribe_json", json={"provider_uid": "openai", "model": "whisper-1",
                                                               "file": file})
    assert response.status_code == 400
    assert message in response.json()["detail"] and "file" in response.json()["detail"]
    assert emulator.recorded() == []


@pytest.mark.parametrize(
    ("name", "data", "mime", "message"),
    [("a.wav", b"", "audio/wav", "empty"), ("a.png", b"\x89PNG", "image/png", "must be audio"),
     ("a.txt", WAV, "application/octet-stream", "must be audio")],
)
async def test_bad_multipart_uploads_are_400s(user, configs, emulator, name, data, mime, message):
    response = await send(user, "multipart", "openai", "whisper-1", data=data, name=name, mime=mime)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert emulator.recorded() == []


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"model": "whisper-1"}, "provider_uid"),
        ({"provider_uid": "openai", "model": "whisper-1", "gen_config": "{not json"}, "gen_config"),
        ({"provider_uid": "openai", "model": "whisper-1", "gen_config": '{"temperature": 5}'}, "gen_config.temperature"),
        ({"provider_uid": "openai", "model": "whisper-1", "gen_config": '{"beam": 5}'}, "gen_config.beam"),
        ({"provider_uid": "openai", "model": "whisper-1", "language": "english!"}, "language"),
        ({"provider_uid": "openai", "model": "whisper-1", "requests": "[]"}, "requests"),  # single only
    ],
)
async def test_bad_multipart_fields_are_400s_naming_the_field(user, configs, emulator, form, field):
    response = await user.post("/audio/transcribe", data=form, files={"file": ("a.wav", WAV, "audio/wav")})
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_multipart_request_without_a_file_is_a_400(user, configs, emulator):
    response = await user.post("/audio/transcribe", data={"provider_uid": "openai", "model": "whisper-1"})
    assert response.status_code == 400 and "file" in response.json()["detail"]
    assert emulator.recorded() == []


@pytest.mark.parametrize("endpoint", ["json", "multipart"])
async def test_a_file_over_the_audio_limit_is_a_413(user, configs, emulator, settings, endpoint):
    settings.QALBY_MAX_AUDIO_BYTES = len(WAV) - 1
    response = await send(user, endpoint, "openai", "whisper-1")
    assert response.status_code == 413
    assert str(len(WAV) - 1) in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_body_over_the_transcription_body_limit_is_a_413_before_it_is_read(user, configs, emulator, settings):
    settings.QALBY_BODY_LIMITS = [("/audio/transcribe", 64 * 1024)]
    response = await send(user, "multipart", "openai", "whisper-1", data=wav_file(3.0))
    assert response.status_code == 413
    assert emulator.recorded() == []


async def test_a_fallback_with_one_bad_file_calls_no_provider(user, configs, emulator):
    body = {"requests": [transcribe("openai", "whisper-1", WAV),
                         transcribe("groq", "whisper-large-v3", file=["b.wav", "%%%", "audio/wav"])]}
    response = await user.post("/audio/transcribe_json", json=body)
    assert response.status_code == 400
    assert "requests.1" in response.json()["detail"] and "not valid base64" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_transcription_needs_a_use_key(http, make_key, configs):
    assert (await http.post("/audio/transcribe_json", json=transcribe("openai", "whisper-1", WAV))).status_code == 401
    manage_only = {"Authorization": f"Bearer {await make_key('manage')}"}
    response = await http.post("/audio/transcribe", data={"provider_uid": "openai", "model": "whisper-1"},
                               files={"file": ("a.wav", WAV, "audio/wav")}, headers=manage_only)
    assert response.status_code == 403
