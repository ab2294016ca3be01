"""Every chat provider through the HTTP API and its real SDK, against the emulator."""

import base64

import pytest

from tests.agent.helpers import single, statuses, stream, text_of
from tests.conftest import CHAT_PROVIDERS

pytestmark = pytest.mark.django_db(transaction=True)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
PDF = base64.b64encode(b"%PDF-1.4\n%fake\n").decode()


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_run_answers_with_what_the_provider_received(user, configs, emulator, provider):
    body = {
        "provider_uid": provider,
        "model": "chat-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "hello there"},
        ],
        "gen_config": {"temperature": 0.3, "max_tokens": 50},
    }
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"] == (
        "hello there [model=chat-model system=be brief images=0 temperature=0.3 max_tokens=50]"
    )
    assert (answer["provider_uid"], answer["model"], answer["finish_reason"]) == (provider, "chat-model", "stop")
    assert answer["usage"]["output_tokens"] == 8 and answer["usage"]["input_tokens"] > 0
    assert statuses(answer["attempts"]) == ["ok"]
    assert response.headers["X-Request-ID"] == answer["request_id"]
    assert len(emulator.recorded(provider)) == 1


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_stream_sends_start_deltas_and_done(user, configs, provider):
    body = single(provider, gen_config={"temperature": 0.5})
    status, lines, headers = await stream(user, body)
    assert status == 200
    assert headers["content-type"] == "application/x-ndjson"
    assert lines[0] == {"type": "start", "request_id": headers["X-Request-ID"], "provider_uid": provider, "model": "m1"}
    assert [line["type"] for line in lines[1:-1]] == ["delta"] * (len(lines) - 2)
    assert len(lines) > 4  # streamed piece by piece, not in one block
    done = lines[-1]
    assert done["type"] == "done" and done["finish_reason"] == "stop" and done["provider_uid"] == provider
    assert done["usage"]["output_tokens"] == 7
    non_streamed = (await user.post("/agent/run", json=body)).json()["output"]
    assert text_of(lines) == non_streamed


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_images_reach_each_provider_in_its_own_form(user, configs, provider):
    body = {
        "provider_uid": provider, "model": "vision",
        "messages": [
            {"role": "user", "content": PNG, "mime_type": "image/png", "caption": "what is this?"},
            {"role": "user", "content": "describe"},
        ],
    }
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    assert "images=1:image/png" in response.json()["output"]


@pytest.mark.parametrize(("provider", "accepted"), [("openai", True), ("anthropic", True), ("google", True), ("groq", False)])
async def test_documents_go_where_they_are_accepted_and_are_refused_before_any_call(
    user, configs, emulator, provider, accepted
):
    body = {"provider_uid": provider, "model": "docs", "messages": [
        {"role": "user", "content": PDF, "mime_type": "application/pdf", "caption": "summarise"}]}
    response = await user.post("/agent/run", json=body)
    if accepted:
        assert response.status_code == 200, response.text
        assert "application/pdf" in response.json()["output"]
    else:
        assert response.status_code == 400
        assert "application/pdf" in response.json()["detail"] and provider in response.json()["detail"]
        assert emulator.recorded(provider) == []


async def test_an_unaccepted_mime_type_falls_over_inside_a_chain(user, configs, emulator):
    body = {"requests": [
        {"provider_uid": "groq", "model": "v", "messages": [{"role": "user", "content": PDF, "mime_type": "application/pdf"}]},
        {"provider_uid": "anthropic", "model": "v", "messages": [{"role": "user", "content": PDF, "mime_type": "application/pdf"}]},
    ]}
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert response.json()["provider_uid"] == "anthropic"
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert "application/pdf" in response.json()["attempts"][0]["error"]
    assert emulator.recorded("groq") == []


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_common_gen_config_is_mapped_for_each_provider(user, configs, emulator, provider):
    # provider_options are the provider's own fields, from each provider's allow-list, passed as they are.
    options = {"top_k": 5} if provider in ("google", "anthropic") else {"user": "abc"}
    body = single(provider, gen_config={"temperature": 0.7, "max_tokens": 33, "top_p": 0.9, "stop": ["END"], "seed": 7,
                                        "provider_options": options})
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    assert "temperature=0.7 max_tokens=33" in response.json()["output"]
    sent = emulator.recorded(provider)[0]
    raw = sent.body.decode()
    assert "0.9" in raw and "END" in raw  # top_p and stop travelled in the provider's own field names
    if provider == "google":
        assert '"topK": 5' in raw
    else:
        assert {k: sent.json()[k] for k in options} == options


async def test_provider_options_the_sdk_refuses_fail_the_attempt_not_the_server(user, configs):
    # An allowed key with a value google-genai's config type refuses.
    options = {"thinking_config": {"bogus": 1}}
    response = await user.post("/agent/run", json=single("google", gen_config={"provider_options": options}))
    assert response.status_code == 400
    assert "provider_options not accepted by google-genai" in response.json()["detail"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_max_tokens_reached_is_reported_as_length(user, configs, provider):
    response = await user.post("/agent/run", json=single(provider, model="m~long40", gen_config={"max_tokens": 10}))
    assert response.status_code == 200, response.text
    assert response.json()["finish_reason"] in {"length", "stop"}
