"""Errors under /v1 in OpenAI's shape, as the openai SDK's typed exceptions; streams that fail."""

import json

import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello there"}]


async def failure(call):
    with pytest.raises(openai.APIStatusError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(("model", "status", "kind"), [
    ("openai/m~e400", 400, openai.BadRequestError),
    ("anthropic/m~e429~ra30", 429, openai.RateLimitError),
    ("openai/m~e500", 502, openai.InternalServerError),
    ("nosuch/m1", 404, openai.NotFoundError),
    ("gpt-4o", 404, openai.NotFoundError),  # a name without a slash: a route name, none yet
])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_failure_before_the_first_byte_is_the_sdks_typed_error(client, configs, model, status, kind, stream):
    error = await failure(client.chat.completions.create(model=model, messages=HELLO, stream=stream))
    assert type(error) is kind and error.status_code == status
    assert error.type and error.message and set(error.body) >= {"message", "type", "param", "code"}
    assert error.response.headers["content-type"] == "application/json"  # not a stream
    if status == 429:
        assert error.response.headers["retry-after"] == "30"
        assert [a["status"] for a in error.body["attempts"]] == ["error"]
    if status == 404:
        assert error.code == "model_not_found" and error.param == "model"


async def test_a_wrong_key_is_an_authentication_error(live_server_url, http, configs):
    async with openai.AsyncOpenAI(base_url=f"{live_server_url}/v1", api_key="qpk_nope_nope", max_retries=0) as sdk:
        error = await failure(sdk.chat.completions.create(model="openai/m1", messages=HELLO))
    assert type(error) is openai.AuthenticationError and error.code == "invalid_api_key"


async def test_a_key_without_the_use_scope_is_permission_denied(live_server_url, http, make_key, configs):
    key = await make_key("manage")
    async with openai.AsyncOpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0) as sdk:
        error = await failure(sdk.chat.completions.create(model="openai/m1", messages=HELLO))
    assert type(error) is openai.PermissionDeniedError


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"temperature": 7}, "temperature"),  # our own limits apply, named in OpenAI's terms
    ({"max_tokens": 0}, "max_tokens"),
    ({"response_format": {"type": "json_object"}}, "response_format"),  # Anthropic has no such field
    ({"extra_body": {"frobnicate": True}}, "frobnicate"),  # a field this API does not take
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]},
     "messages.0.content.0.image_url.url"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "nope", "content": "3"}]},
     "messages.1"),
])
async def test_input_we_cannot_honour_is_a_bad_request_naming_the_field(client, configs, emulator, extra, param):
    body = {"model": "anthropic/m1", "messages": HELLO, **extra}
    error = await failure(client.chat.completions.create(**body))
    assert type(error) is openai.BadRequestError and error.param == param, error.body
    assert error.type == "invalid_request_error"
    assert emulator.recorded() == []  # refused before any call


async def test_unknown_paths_and_methods_are_not_found(client, http, key):
    with pytest.raises(openai.NotFoundError) as caught:
        await client.embeddings.create(model="openai/e", input="x")
    assert caught.value.body["message"] == "Invalid URL (POST /v1/embeddings)"
    for method, path in [("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("PUT", "/v1/x/y"), ("GET", "/v1")]:
        response = await http.request(method, path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["type"] == "invalid_request_error", (method, path)


async def test_our_own_endpoints_keep_their_error_shape(http):
    response = await http.post("/agent/run", json={})
    assert response.status_code == 401 and set(response.json()) == {"detail", "request_id"}


async def test_a_stream_that_breaks_after_its_first_chunk_raises_and_never_says_done(client, configs):
    stream = await client.chat.completions.create(model="openai/m~long30~cut6", messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert type(caught.value) is openai.APIError  # the in-band error, not a dropped connection
    assert "openai/m~long30~cut6" in caught.value.message
    assert [a["status"] for a in caught.value.body["attempts"]] == ["error"]
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)  # it had begun


async def test_the_broken_stream_on_the_wire_ends_with_one_error_event(http, key, configs):
    body = {"model": "groq/m~long30~cut6", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    async with http.stream("POST", "/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {key}"}) as response:
        raw = (await response.aread()).decode()
    assert response.status_code == 200
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert "[DONE]" not in raw
    assert all("error" not in json.loads(e) for e in events[:-1])
    assert json.loads(events[-1])["error"]["type"] == "server_error"


async def test_a_whole_stream_ends_with_done(http, key, configs):
    body = {"model": "openai/m1", "messages": HELLO, "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {key}"}) as response:
        raw = (await response.aread()).decode()
    assert raw.endswith("data: [DONE]\n\n") and raw.count("[DONE]") == 1


async def test_stream_options_without_a_stream_is_refused(client, configs):
    error = await failure(client.chat.completions.create(model="openai/m1", messages=HELLO,
                                                         stream_options={"include_usage": True}))
    assert type(error) is openai.BadRequestError and error.param == "stream_options"



async def test_a_body_that_is_not_json_is_a_bad_request_in_openais_shape(http, key):
    response = await http.post("/v1/chat/completions", content=b"{not json",
                               headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
