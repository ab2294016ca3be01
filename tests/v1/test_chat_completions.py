"""POST /v1/chat/completions through the official openai SDK (async and sync), every chat provider behind it."""

import asyncio
import base64
import json

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = ["openai", "anthropic", "google", "groq"]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "hello there"},
]
ECHO = "hello there [model=chat-model system=be brief images=0 temperature=0.3 max_tokens=50]"
ADD = {"type": "function", "function": {
    "name": "add", "description": "Adds two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}


@pytest.mark.parametrize("provider", CHAT)
async def test_answer_is_a_chat_completion_of_the_model_that_served_it(client, configs, provider):
    raw = await client.chat.completions.with_raw_response.create(
        model=f"{provider}/chat-model", messages=CONVERSATION, temperature=0.3, max_tokens=50)
    answer = raw.parse()
    assert answer.choices[0].message.content == ECHO
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason == "stop" and len(answer.choices) == 1
    assert answer.model == f"{provider}/chat-model" and answer.object == "chat.completion"
    assert answer.usage.completion_tokens == 8 and answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 8
    assert answer.id == f"chatcmpl-{raw.headers['x-request-id']}" and answer.created > 0
    assert raw.headers["x-qalby-attempts"] == f"{provider}/chat-model=ok"


async def test_the_sync_client_works_the_same(sync_client, configs):
    answer = await asyncio.to_thread(
        sync_client.chat.completions.create, model="openai/chat-model", messages=CONVERSATION,
        temperature=0.3, max_completion_tokens=50)
    assert answer.choices[0].message.content == ECHO


@pytest.mark.parametrize("provider", CHAT)
async def test_stream_assembles_the_same_text_and_ends_with_usage(client, configs, provider):
    kwargs = {"model": f"{provider}/m1", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.5}
    whole = await client.chat.completions.create(**kwargs)
    raw = await client.chat.completions.with_raw_response.create(
        **kwargs, stream=True, stream_options={"include_usage": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-qalby-attempts"] == f"{provider}/m1=streaming"
    chunks = [chunk async for chunk in raw.parse()]
    assert len(chunks) > 4  # piece by piece, not in one block
    assert all(c.id == f"chatcmpl-{raw.headers['x-request-id']}" and c.model == f"{provider}/m1" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_sync_stream_without_usage_has_no_usage_chunk(sync_client, configs):
    def read():
        stream = sync_client.chat.completions.create(
            model="openai/m1", messages=[{"role": "user", "content": "hello there"}], stream=True)
        return list(stream)

    chunks = await asyncio.to_thread(read)
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("hello there [model=m1")


@pytest.mark.parametrize("provider", CHAT)
async def test_a_tool_call_round_trip(client, configs, provider):
    messages = [{"role": "user", "content": 'CALL add {"a": 1, "b": 2}'}]
    first = await client.chat.completions.create(model=f"{provider}/m1", messages=messages, tools=[ADD],
                                                 tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "add" and call.id
    assert json.loads(call.function.arguments) == {"a": 1, "b": 2}
    # The app sends the SDK's message back as it is (a signature, if any, rides along), then the result.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "3"}]
    second = await client.chat.completions.create(model=f"{provider}/m1", messages=messages, tools=[ADD])
    assert second.choices[0].finish_reason == "stop"
    assert "tool_results=3" in second.choices[0].message.content


async def test_a_streamed_tool_call(client, configs):
    stream = await client.chat.completions.create(
        model="anthropic/m1", messages=[{"role": "user", "content": 'CALL add {"a": 1, "b": 2}'}], tools=[ADD],
        stream=True)
    chunks = [chunk async for chunk in stream]
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [(0, "add", {"a": 1, "b": 2})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("provider", CHAT)
async def test_an_image_as_a_data_url(client, configs, provider):
    answer = await client.chat.completions.create(model=f"{provider}/vision", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
    ]}])
    assert "images=1:image/png" in answer.choices[0].message.content
    assert answer.choices[0].message.content.startswith("what is this?")


async def test_gen_config_and_harmless_fields_reach_the_provider(client, configs, emulator):
    answer = await client.chat.completions.create(
        model="openai/m1", messages=[{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                                     {"role": "user", "content": "hi"}],
        top_p=0.9, stop=["END"], seed=7, presence_penalty=0.5, frequency_penalty=0.25, user="abc", n=1,
        response_format={"type": "json_object"}, store=False, metadata={"app": "x"})
    assert "system=be brief" in answer.choices[0].message.content
    sent = emulator.recorded("openai")[0].json()
    assert {k: sent[k] for k in ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user",
                                 "response_format")} == {
        "top_p": 0.9, "stop": ["END"], "seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.25, "user": "abc",
        "response_format": {"type": "json_object"}}
    assert "store" not in sent and "metadata" not in sent


async def test_models_lists_nothing_yet(client):
    page = await client.models.list()
    assert page.data == []
