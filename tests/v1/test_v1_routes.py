"""/v1 over routes (issue #14): an app on the openai SDK names a route as its model and gets the
fallback an administrator defined; /v1/models lists the routes its key may use; /v1/audio speaks and
transcribes in OpenAI's formats."""

import asyncio

import openai
import pytest

from tests.routes.test_audio_routes import WAV
from tests.routes.test_chat_routes import manager  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def routes(manager, configs):  # noqa: F811
    for body in (
        {"name": "assist", "kind": "chat", "entries": [
            {"provider_uid": "openai", "model": "m~e503"},
            {"provider_uid": "anthropic", "model": "claude-x", "settings": {"gen_config": {"temperature": 0.3}}},
            {"provider_uid": "google", "model": "gemini-x"}]},
        {"name": "other", "kind": "chat", "entries": [{"provider_uid": "groq", "model": "g"}]},
        {"name": "voice", "kind": "speech", "entries": [
            {"provider_uid": "openai", "model": "tts-1~e500", "settings": {"voice": "alloy"}},
            {"provider_uid": "elevenlabs", "model": "eleven_multilingual_v2", "settings": {"voice": "Rachel"}}]},
        {"name": "scribe", "kind": "transcription", "entries": [
            {"provider_uid": "groq", "model": "whisper-large-v3~e503"}, {"provider_uid": "openai", "model": "whisper-1"}]},
    ):
        response = await manager.post("/routes", json=body)
        assert response.status_code == 201, response.text


async def test_a_route_is_a_model_across_providers(client, routes):
    raw = await client.chat.completions.with_raw_response.create(model="assist", messages=HELLO)
    answer = raw.parse()
    assert answer.model == "anthropic/claude-x"  # the model that served it
    assert "temperature=0.3" in answer.choices[0].message.content  # the entry's own setting
    assert raw.headers["x-qalby-attempts"] == "openai/m~e503=error:Unavailable, anthropic/claude-x=ok"
    # The request's settings over the entry's.
    answer = await client.chat.completions.create(model="assist", messages=HELLO, temperature=0.9)
    assert "temperature=0.9" in answer.choices[0].message.content


async def test_a_route_streams_with_its_fallback_before_the_first_byte(client, routes):
    stream = await client.chat.completions.create(model="assist", messages=HELLO, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].model == "anthropic/claude-x"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("hello there")
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_a_route_stream_that_breaks_after_its_first_byte_is_an_error_not_a_restart(client, manager, configs):  # noqa: F811
    await manager.post("/routes", json={"name": "brittle", "kind": "chat", "entries": [
        {"provider_uid": "openai", "model": "m~long30~cut6"}, {"provider_uid": "groq", "model": "g"}]})
    stream = await client.chat.completions.create(model="brittle", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _chunk in stream:
            pass


async def test_models_lists_the_routes_the_key_may_use(client, routes, live_server_url, make_key):
    listed = await client.models.list()
    assert [m.id for m in listed.data] == ["assist", "other", "scribe", "voice"]
    assert {m.owned_by for m in listed.data} >= {"qalby-route:chat", "qalby-route:speech"}
    token = await make_key("use", routes=["assist"], direct=False)
    async with openai.AsyncOpenAI(base_url=f"{live_server_url}/v1", api_key=token, max_retries=0) as limited:
        assert [m.id for m in (await limited.models.list()).data] == ["assist"]
        assert (await limited.chat.completions.create(model="assist", messages=HELLO)).choices
        with pytest.raises(openai.PermissionDeniedError, match="'other'"):
            await limited.chat.completions.create(model="other", messages=HELLO)
        with pytest.raises(openai.PermissionDeniedError, match="route"):
            await limited.chat.completions.create(model="openai/gpt", messages=HELLO)
        with pytest.raises(openai.PermissionDeniedError):  # a key kept to routes learns nothing of config uids
            await limited.chat.completions.create(model="no-such-config/gpt", messages=HELLO)


async def test_an_unknown_route_is_model_not_found(client, routes):
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="nope", messages=HELLO)
    assert raised.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # a speech route is not a chat model
        await client.chat.completions.create(model="voice", messages=HELLO)


async def test_speech_over_a_route_and_directly(client, routes, emulator):
    raw = await client.audio.speech.with_raw_response.create(model="voice", voice="alloy", input="hello there")
    assert raw.headers["x-qalby-attempts"].endswith("elevenlabs/eleven_multilingual_v2=streaming")
    assert raw.headers["content-type"] == "audio/mpeg" and len(raw.content) > 100
    audio = await client.audio.speech.create(model="openai/tts-1", voice="alloy", input="hello there",
                                             response_format="wav", speed=1.5)
    assert audio.content[:4] == b"RIFF"
    sent = emulator.recorded("openai", "/audio/speech")[-1].json()
    assert (sent["voice"], sent["response_format"], sent["speed"]) == ("alloy", "wav", 1.5)


async def test_transcriptions_over_a_route_and_directly_in_each_format(client, sync_client, routes):
    answer = await client.audio.transcriptions.create(model="scribe", file=("hello.wav", WAV, "audio/wav"))
    assert answer.text.startswith("transcript of hello.wav")
    text = await client.audio.transcriptions.create(model="openai/whisper-1", file=("hello.wav", WAV, "audio/wav"),
                                                    response_format="text", language="de")
    assert isinstance(text, str) and "language=de" in text
    verbose = await asyncio.to_thread(
        sync_client.audio.transcriptions.create, model="openai/whisper-1", file=("hello.wav", WAV, "audio/wav"),
        response_format="verbose_json", timestamp_granularities=["segment"])
    assert verbose.text.startswith("transcript of") and verbose.segments and verbose.segments[0].id == 0


async def test_audio_errors_are_the_sdks_typed_errors(client, routes):
    with pytest.raises(openai.NotFoundError):
        await client.audio.speech.create(model="nope", voice="alloy", input="hi")
    with pytest.raises(openai.BadRequestError, match="response_format"):
        await client.audio.transcriptions.create(model="scribe", file=("a.wav", WAV, "audio/wav"),
                                                 response_format="srt")
    with pytest.raises(openai.InternalServerError):
        await client.audio.transcriptions.create(model="groq/whisper-large-v3~e500", file=("a.wav", WAV, "audio/wav"))


async def test_v1_requests_are_logged_with_their_route_and_version(client, routes):
    from asgiref.sync import sync_to_async

    from providers.models import RequestLog
    from providers.requestlogs.batching import writer

    await client.chat.completions.create(model="assist", messages=HELLO)
    assert await sync_to_async(writer.flush)(timeout=10)
    (log,) = await sync_to_async(lambda: list(RequestLog.objects.filter(route="assist")))()
    assert (log.route_version, log.provider_uid, log.status) == (1, "anthropic", 200)
    assert log.endpoint.startswith("POST /v1/chat/completions") and log.attempt_count == 2
