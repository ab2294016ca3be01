"""``provider_options`` cannot reach an SDK's client options: the stored key never goes where a client says.

The attack: a ``use`` key asked google-genai, through ``provider_options.http_options``, to send the
request (with ``x-goog-api-key``) to a listener of its own. Every provider's pass-through is now an
allow-list of request-body fields; anything else is a 400 naming the keys, before any upstream call.
"""

import asyncio

import pytest

from tests.agent.helpers import chain, single, stream
from tests.audio.helpers import speak, transcribe, wav_file

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """A loopback TCP server standing in for the attacker's: it counts connections and answers 200."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""

    async def _handle(self, reader, writer):
        self.connections += 1
        self.received += await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def test_gemini_http_options_cannot_send_the_stored_key_elsewhere(user, configs, emulator):
    async with Listener() as listener:
        options = {"http_options": {"base_url": listener.url, "headers": {"x-test": "1"}}}
        body = single("google", gen_config={"provider_options": options})
        response = await user.post("/agent/run", json=body)
        status, streamed, _ = await stream(user, body)
    for status_code, answer in [(response.status_code, response.json()), (status, streamed)]:
        assert status_code == 400, answer
        assert "http_options" in answer["detail"] and "'google'" in answer["detail"]
        assert "top_k" in answer["detail"]  # the accepted keys are listed
        assert emulator.keys["google"] not in str(answer)
    assert listener.connections == 0 and listener.received == b""
    assert emulator.recorded("google") == []


# What each SDK would take as a client or request option if it reached it.
CLIENT_OPTIONS = ["http_options", "extra_headers", "extra_query", "extra_body", "timeout", "base_url", "headers",
                  "api_key", "request_options", "additional_headers", "additional_query_parameters", "stream", "model"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "groq"])
@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_no_chat_provider_takes_client_options(user, configs, emulator, provider, path):
    for key in CLIENT_OPTIONS:
        response = await user.post(path, json=single(provider, gen_config={"provider_options": {key: {"x": "y"}}}))
        assert response.status_code == 400, (key, response.text)
        assert f"not accepted: {key};" in response.json()["detail"]
    assert emulator.recorded(provider) == []


async def test_a_refused_option_in_any_chain_entry_refuses_the_request_before_any_call(user, configs, emulator):
    body = chain(single("openai"), single("anthropic", gen_config={"provider_options": {"extra_headers": {}}}))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400
    assert "'anthropic'" in response.json()["detail"] and "extra_headers" in response.json()["detail"]
    assert emulator.recorded("openai") == [] and emulator.recorded("anthropic") == []


@pytest.mark.parametrize("provider", ["openai", "elevenlabs"])
async def test_no_speech_provider_takes_client_options(user, configs, emulator, provider):
    for path in ["/audio/speak", "/audio/speak_stream"]:
        for key in CLIENT_OPTIONS:
            response = await user.post(path, json=speak(provider, gen_config={"provider_options": {key: "x"}}))
            assert response.status_code == 400, (key, response.text)
            assert f"not accepted: {key};" in response.json()["detail"]
    assert emulator.recorded(provider) == []


@pytest.mark.parametrize(("provider", "model"), [("openai", "whisper-1"), ("groq", "whisper-large-v3"),
                                                 ("elevenlabs", "scribe_v1")])
async def test_no_transcription_provider_takes_client_options(user, configs, emulator, provider, model):
    for key in CLIENT_OPTIONS:
        body = transcribe(provider, model, wav_file(0.1), gen_config={"provider_options": {key: "x"}})
        response = await user.post("/audio/transcribe_json", json=body)
        assert response.status_code == 400, (key, response.text)
        assert f"not accepted: {key};" in response.json()["detail"]
        form = {"provider_uid": provider, "model": model, "gen_config": f'{{"provider_options": {{"{key}": 1}}}}'}
        response = await user.post("/audio/transcribe", data=form, files={"file": ("a.wav", wav_file(0.1), "audio/wav")})
        assert response.status_code == 400, (key, response.text)
    assert emulator.recorded(provider) == []


@pytest.mark.parametrize(("provider", "options"), [
    ("openai", {"user": "u-1", "reasoning_effort": "low"}),
    ("anthropic", {"top_k": 5, "metadata": {"user_id": "u-1"}}),
    ("groq", {"user": "u-1", "service_tier": "auto"}),
])
async def test_allowed_options_reach_the_provider_body(user, configs, emulator, provider, options):
    response = await user.post("/agent/run", json=single(provider, gen_config={"provider_options": options}))
    assert response.status_code == 200, response.text
    sent = emulator.recorded(provider)[0].json()
    assert {k: sent[k] for k in options} == options


@pytest.mark.parametrize("model", ["models/../files", "m?key=1", "m#x", "m%2F..%2Ffiles", "a b", "m\\x", "/m"])
async def test_a_model_name_cannot_step_out_of_its_url_path_segment(user, configs, emulator, model):
    response = await user.post("/agent/run", json=single("google", model=model))
    assert response.status_code == 400, response.text
    assert "model" in response.json()["detail"]
    response = await user.post("/audio/speak", json=speak("elevenlabs", model=model))
    assert response.status_code == 400, response.text
    assert emulator.recorded("google") == [] and emulator.recorded("elevenlabs") == []


async def test_an_anonymous_upload_sized_body_is_refused_by_its_length(http):
    # The same rule under the test server (uvicorn), where the ASGI guard applies it.
    response = await http.post("/audio/transcribe", content=b"x" * 2_000_000,
                               headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    response = await http.post("/audio/transcribe", content=b"x" * 2_000_000,
                               headers={"Content-Type": "multipart/form-data; boundary=x",
                                        "Authorization": "Bearer qpk_wrong_key"})
    assert response.status_code == 401


async def test_unknown_provider_uids_leave_nothing_behind(user, configs):
    from providers.adapter_cache import adapters

    before = len(adapters._locks)
    for n in range(30):
        response = await user.post("/agent/run", json=single(f"no-such-config-{n}"))
        assert response.status_code == 404
    assert len(adapters._locks) <= before


async def test_a_manage_key_cannot_point_a_stored_key_at_a_new_base_url(http, make_key, configs, emulator):
    http.headers["Authorization"] = f"Bearer {await make_key('use', 'manage')}"
    async with Listener() as listener:
        moved = {"uid": "openai", "provider": "openai", "base_url": listener.url}
        assert (await http.post("/providers/config", json=moved)).status_code == 400  # api_key is required
        assert (await http.post("/providers/config", json={**moved, "api_key": "sk-new-key"})).status_code == 200
        await http.post("/agent/run", json=single("openai"))
    assert b"sk-new-key" in listener.received
    assert emulator.keys["openai"].encode() not in listener.received
