"""Contract tests: the official async OpenAI SDK against the emulator's Chat Completions API.

Responses API and audio are in test_responses.py / test_audio.py beside it, as in providers/adapters/openai/.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.emulator.core import search_results

PNG = "data:image/png;base64,iVBORw0KGgo="
ADD_TOOL = {
    "type": "function",
    "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {}, "b": {}}}},
}


@pytest.fixture
async def client(emulator):
    async with openai.AsyncOpenAI(
        api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"], max_retries=0, timeout=5
    ) as sdk:
        yield sdk


def make(emulator, **options) -> openai.AsyncOpenAI:
    options = {"max_retries": 0, "timeout": 5, **options}
    return openai.AsyncOpenAI(
        api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"], **options
    )


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_base_url_ends_in_v1(emulator):
    assert emulator.base_urls["openai"].endswith("/openai/v1")


async def test_text_answer_echoes_what_arrived(emulator, client):
    reply = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
        ],
        temperature=0.2,
        max_tokens=50,
    )
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    choice = reply.choices[0]
    assert (
        choice.message.content
        == "hello [model=gpt-4o system=be brief images=1:image/png temperature=0.2 max_tokens=50]"
    )
    assert (
        choice.finish_reason == "stop"
        and choice.message.role == "assistant"
        and choice.message.refusal is None
    )
    assert reply.model == "gpt-4o" and reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    # "be brief hello" is 3 tokens, plus a fixed 85 per image; the answer is 7 words
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (88, 7, 95)
    (recorded,) = emulator.recorded("openai", "/chat/completions")
    assert recorded.path == "/openai/v1/chat/completions" and recorded.method == "POST"
    assert recorded.headers["authorization"] == "[redacted]"
    assert recorded.json()["messages"][1]["content"][1]["image_url"]["url"] == PNG
    assert recorded.json()["temperature"] == 0.2 and recorded.json()["max_tokens"] == 50


async def test_developer_role_counts_as_system_and_max_completion_tokens(client):
    reply = await client.chat.completions.create(
        model="gpt-5",
        messages=[{"role": "developer", "content": "terse"}, *user("hi")],
        max_completion_tokens=40,
    )
    assert (
        reply.choices[0].message.content
        == "hi [model=gpt-5 system=terse images=0 temperature=- max_tokens=40]"
    )


async def test_max_tokens_truncates_with_finish_reason_length(client):
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=user("one two three four"), max_tokens=3
    )
    assert reply.choices[0].message.content == "one two three"
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


async def test_long_answer(client):
    reply = await client.chat.completions.create(model="gpt-4o~long40", messages=user("x"))
    assert len(reply.choices[0].message.content.split()) == 40 and reply.usage.completion_tokens == 40
    assert reply.model == "gpt-4o"


async def test_tool_call_then_tool_result(emulator, client):
    messages = user('add them: CALL add {"a": 1, "b": 2}')
    first = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=[ADD_TOOL])
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    (call,) = first.choices[0].message.tool_calls
    assert call.type == "function" and call.function.name == "add" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"a": 1, "b": 2}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "3"},
    ]
    second = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=[ADD_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.endswith("tool_results=3]")
    assert emulator.recorded("openai")[-1].json()["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "3",
    }


async def test_directive_for_a_tool_not_offered_is_plain_text(client):
    reply = await client.chat.completions.create(model="gpt-4o", messages=user("CALL add {}"))
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].message.content.startswith(
        "CALL add {}"
    )


async def test_web_search_options_cite_the_search_results(client):
    query = "news about Rome"
    reply = await client.chat.completions.create(
        model="gpt-4o-search-preview", messages=user(query), web_search_options={}
    )
    message = reply.choices[0].message
    hits = search_results(query)
    assert [a.type for a in message.annotations] == ["url_citation"] * len(hits)
    cited = [
        (
            a.url_citation.url,
            a.url_citation.title,
            message.content[a.url_citation.start_index : a.url_citation.end_index],
        )
        for a in message.annotations
    ]
    assert cited == [(h["url"], h["title"], h["snippet"]) for h in hits]
    assert reply.usage.completion_tokens == len(message.content.split())
    stream = await client.chat.completions.create(
        model="gpt-4o-search-preview", messages=user(query), web_search_options={}, stream=True
    )
    chunks = await collect(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert chunks[-2].choices[0].delta.model_extra["annotations"] == [
        a.model_dump() for a in message.annotations
    ]


async def test_stream_text_with_usage_chunk(emulator, client):
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("hello there"), stream=True, stream_options={"include_usage": True}
    )
    chunks = await collect(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there [model=gpt-4o system=- images=0 temperature=- max_tokens=-]"
    assert [c.choices[0].delta.content for c in chunks[1:3]] == ["hello ", "there "]
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert len({c.id for c in chunks}) == 1
    assert emulator.recorded("openai")[-1].json()["stream"] is True


async def test_stream_without_include_usage_has_no_usage(client):
    chunks = await collect(
        await client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)


async def test_stream_wire_format(emulator):
    """No ``event:`` lines, ``data: [DONE]`` last (what a proxy parsing the raw stream relies on)."""
    headers = {"authorization": f"Bearer {emulator.keys['openai']}"}
    body = {"model": "gpt-4o", "messages": user("hi"), "stream": True}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{emulator.base_urls['openai']}/chat/completions", json=body, headers=headers
        )
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])
    assert "event:" not in response.text and response.headers["x-request-id"].startswith("req_")


async def test_stream_tool_call_deltas(client):
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user('CALL add {"a": 1, "b": 2}'), tools=[ADD_TOOL], stream=True
    )
    chunks = await collect(stream)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    assert first.tool_calls[0].id.startswith("call_") and first.tool_calls[0].function.name == "add"
    assert first.tool_calls[0].function.arguments == ""
    fragments = [c.choices[0].delta.tool_calls[0] for c in chunks[1:-1]]
    assert all(f.id is None and f.function.name is None and f.index == 0 for f in fragments)
    assert [f.function.arguments for f in fragments][:2] == ['{"', "a"]
    assert json.loads("".join(f.function.arguments for f in fragments)) == {"a": 1, "b": 2}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_helper_accumulates(client):
    async with client.chat.completions.stream(model="gpt-4o", messages=user("hey")) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content.startswith("hey [model=gpt-4o")


async def test_wrong_key_is_401_with_real_body(emulator):
    async with openai.AsyncOpenAI(
        api_key="sk-wrong-0000000000", base_url=emulator.base_urls["openai"], max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as error:
            await bad.chat.completions.create(model="gpt-4o", messages=user("x"))
    assert error.value.status_code == 401 and error.value.code == "invalid_api_key"
    assert error.value.type == "invalid_request_error" and "Incorrect API key provided" in error.value.message
    assert "sk-wrong-0000000000" not in error.value.message  # the real API masks the key


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_status_faults_map_to_sdk_exceptions(client, status, exception):
    with pytest.raises(exception) as error:
        await client.chat.completions.create(model=f"gpt-4o~e{status}", messages=user("x"))
    assert type(error.value) is exception and error.value.status_code == status
    assert (
        isinstance(error.value.body, dict) and error.value.body["message"]
    )  # the SDK unwraps {"error": ...}
    assert str(error.value).startswith(f"Error code: {status} - ")


async def test_rate_limit_carries_retry_after(client):
    with pytest.raises(openai.RateLimitError) as error:
        await client.chat.completions.create(model="gpt-4o~e429~ra1.5", messages=user("x"))
    headers = error.value.response.headers
    assert headers["retry-after"] == "1.5" and headers["retry-after-ms"] == "1500"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert error.value.code == "rate_limit_exceeded" and "try again in 1.5s" in error.value.message


async def test_times_counts_attempts_and_sdk_retries_obey_retry_after(emulator):
    async with make(emulator, max_retries=2) as retrying:
        reply = await retrying.chat.completions.create(model="gpt-4o~e503x2~ra0.01", messages=user("x"))
    assert reply.choices[0].message.content.startswith("x [model=gpt-4o ")
    attempts = emulator.recorded("openai", "/chat/completions")
    assert [a.headers["x-stainless-retry-count"] for a in attempts] == ["0", "1", "2"]


async def test_context_length_and_policy_bodies(client):
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="gpt-4o~ctx", messages=user("x"))
    assert error.value.code == "context_length_exceeded" and error.value.param == "messages"
    assert "maximum context length" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        await client.chat.completions.create(model="gpt-4o~policy", messages=user("x"))
    assert error.value.code == "invalid_prompt" and "usage policy" in error.value.message


async def test_unknown_fault_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="unknown fault 'nonsense'"):
        await client.chat.completions.create(model="gpt-4o~nonsense", messages=user("x"))


async def test_reset_is_a_connection_error_and_resetx1_recovers(emulator, client):
    with pytest.raises(openai.APIConnectionError) as error:
        await client.chat.completions.create(model="gpt-4o~reset", messages=user("x"))
    assert not isinstance(error.value, openai.APITimeoutError)
    async with make(emulator, max_retries=1) as retrying:
        reply = await retrying.chat.completions.create(model="gpt-4o~resetx1", messages=user("x"))
    assert reply.choices[0].finish_reason == "stop"


async def test_hang_times_out(emulator):
    async with make(emulator, timeout=0.3) as impatient:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model="gpt-4o~hang", messages=user("x"))
    assert 0.25 < time.monotonic() - started < 6  # the 0.3 s timeout, not the hang (which never ends)


async def test_slow_and_latency_delay_the_answer(client):
    for model, floor in (("gpt-4o~slow0.2", 0.2), ("gpt-4o~lat150", 0.15)):
        started = time.monotonic()
        await client.chat.completions.create(model=model, messages=user("x"))
        assert time.monotonic() - started >= floor
    started = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o~slow0.2", messages=user("x"), stream=True)
    await stream.__anext__()
    assert time.monotonic() - started >= 0.2
    await stream.close()


async def test_gap_spaces_stream_events(client):
    started = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o~gap60", messages=user("a b"), stream=True)
    arrivals = [time.monotonic() async for _chunk in stream]
    # no gap before the first event; [DONE] (not a chunk) comes one more gap after the last
    assert arrivals[-1] - started >= 0.06 * (len(arrivals) - 1)
    assert len(arrivals) == 9 and arrivals[1] - arrivals[0] > 0.04


async def test_cut_closes_the_stream_without_done(client):
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await client.chat.completions.create(
            model="gpt-4o~cut3", messages=user("a b c d"), stream=True
        ):
            seen.append(chunk)
    assert len(seen) == 3


async def test_stall_keeps_the_connection_open_until_the_read_timeout(emulator):
    seen = []
    async with make(emulator, timeout=0.4) as impatient:
        with pytest.raises(openai.APITimeoutError):
            stream = await impatient.chat.completions.create(
                model="gpt-4o~stall2", messages=user("a b c"), stream=True
            )
            async for chunk in stream:
                seen.append(chunk)
    assert len(seen) == 2


async def test_bad_event_is_invalid_json(client):
    seen = []
    with pytest.raises(json.JSONDecodeError):
        async for chunk in await client.chat.completions.create(
            model="gpt-4o~bad1", messages=user("a b"), stream=True
        ):
            seen.append(chunk)
    assert len(seen) == 1


async def test_nodone_ends_the_stream_without_done(emulator, client):
    chunks = await collect(
        await client.chat.completions.create(model="gpt-4o~nodone", messages=user("a"), stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "stop"  # the SDK cannot tell; a proxy reading raw SSE can
    headers = {"authorization": f"Bearer {emulator.keys['openai']}"}
    body = {"model": "gpt-4o~nodone", "messages": user("a"), "stream": True}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{emulator.base_urls['openai']}/chat/completions", json=body, headers=headers
        )
    assert "[DONE]" not in response.text and '"finish_reason":"stop"' in response.text


async def test_in_band_error_after_n_events(client):
    seen = []
    with pytest.raises(openai.APIError) as error:
        async for chunk in await client.chat.completions.create(
            model="gpt-4o~e500~cut2", messages=user("a b"), stream=True
        ):
            seen.append(chunk)
    assert type(error.value) is openai.APIError and len(seen) == 2
    assert error.value.body["type"] == "server_error" and "had an error" in error.value.message
    # the same fault on a non-streamed request is a plain HTTP error
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-4o~e500~cut2", messages=user("a b"))


async def test_in_band_error_with_times_then_whole_stream(client):
    model = "gpt-4o~e503x1~cut1"
    with pytest.raises(openai.APIError):
        await collect(await client.chat.completions.create(model=model, messages=user("a"), stream=True))
    chunks = await collect(await client.chat.completions.create(model=model, messages=user("a"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_models_and_unknown_urls(emulator, client):
    models = [m.id async for m in client.models.list()]
    assert "gpt-4o" in models and "whisper-1" in models
    assert (await client.models.retrieve("gpt-4o")).owned_by == "system"
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        await client.post("/nowhere", cast_to=object, body={})
    assert emulator.recorded("openai", "/nowhere")[0].path == "/openai/v1/nowhere"
