"""Contract tests: the official async Groq SDK against the emulator (chat + transcription)."""

from __future__ import annotations

import json
import time

import groq
import httpx
import pytest
from groq.types.chat import ChatCompletion, ChatCompletionChunk

ADD_TOOL = {
    "type": "function",
    "function": {"name": "add", "parameters": {"type": "object", "properties": {}}},
}
MODEL = "llama-3.3-70b-versatile"


@pytest.fixture
async def client(emulator):
    async with groq.AsyncGroq(
        api_key=emulator.keys["groq"], base_url=emulator.base_urls["groq"], max_retries=0, timeout=5
    ) as sdk:
        yield sdk


def make(emulator, **options) -> groq.AsyncGroq:
    options = {"max_retries": 0, "timeout": 5, **options}
    return groq.AsyncGroq(api_key=emulator.keys["groq"], base_url=emulator.base_urls["groq"], **options)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_base_url_is_the_bare_prefix(emulator):
    assert emulator.base_urls["groq"].endswith("/groq")


async def test_text_answer(emulator, client):
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "sys"}, *user("hello")],
        temperature=0,
        max_tokens=20,
    )
    assert isinstance(reply, ChatCompletion)
    assert (
        reply.choices[0].message.content
        == f"hello [model={MODEL} system=sys images=0 temperature=0 max_tokens=20]"
    )
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 6)
    assert reply.usage.total_time == pytest.approx(reply.usage.prompt_time + reply.usage.completion_time)
    assert reply.x_groq.id.startswith("req_")
    (recorded,) = emulator.recorded("groq", "/chat/completions")
    assert (
        recorded.path == "/groq/openai/v1/chat/completions"
        and recorded.headers["authorization"] == "[redacted]"
    )
    assert recorded.headers["user-agent"].startswith("AsyncGroq/Python")
    assert recorded.json()["messages"][0] == {"role": "system", "content": "sys"}


async def test_tool_call_round_trip(client):
    messages = user('CALL add {"a": 5}')
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD_TOOL])
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "add"
    assert json.loads(call.function.arguments) == {"a": 5}
    messages += [
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "five"},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD_TOOL])
    assert second.choices[0].message.content.endswith("tool_results=five]")


async def test_stream_usage_rides_in_x_groq(client):
    chunks = await collect(
        await client.chat.completions.create(model=MODEL, messages=user("hi there"), stream=True)
    )
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].x_groq.id.startswith("req_")
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("hi there [model=")
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage is None
    assert last.x_groq.id == chunks[0].x_groq.id and last.x_groq.usage.completion_tokens == 7
    assert all(c.x_groq is None for c in chunks[1:-1])


async def test_stream_include_usage_adds_the_openai_style_chunk(client):
    # groq 1.7.0 has no stream_options parameter; the API takes it, so a client can send it raw
    stream = await client.chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True, extra_body={"stream_options": {"include_usage": True}}
    )
    chunks = await collect(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == chunks[-2].x_groq.usage.total_tokens


async def test_stream_tool_call_arrives_whole(client):
    stream = await client.chat.completions.create(
        model=MODEL, messages=user('CALL add {"a": 1}'), tools=[ADD_TOOL], stream=True
    )
    chunks = await collect(stream)
    (call,) = chunks[1].choices[0].delta.tool_calls
    assert (
        call.function.name == "add" and call.function.arguments == '{"a":1}' and call.id.startswith("call_")
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and len(chunks) == 3


async def test_wrong_key(emulator):
    async with groq.AsyncGroq(api_key="gsk_wrong", base_url=emulator.base_urls["groq"], max_retries=0) as bad:
        with pytest.raises(groq.AuthenticationError) as error:
            await bad.chat.completions.create(model=MODEL, messages=user("x"))
    # unlike openai, groq keeps the whole body, envelope included
    assert error.value.body == {
        "error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
    }


@pytest.mark.parametrize(
    ("status", "exception", "code"),
    [
        (400, groq.BadRequestError, None),
        (404, groq.NotFoundError, "model_not_found"),
        (413, groq.APIStatusError, "rate_limit_exceeded"),
        (429, groq.RateLimitError, "rate_limit_exceeded"),
        (500, groq.InternalServerError, None),
        (503, groq.InternalServerError, "service_unavailable"),
    ],
)
async def test_status_faults(client, status, exception, code):
    with pytest.raises(exception) as error:
        await client.chat.completions.create(model=f"{MODEL}~e{status}", messages=user("x"))
    assert type(error.value) is exception and error.value.status_code == status
    body = error.value.body["error"]
    assert body.get("code") == code and "param" not in body and body["message"]


async def test_rate_limit_retry_after_and_retries(emulator, client):
    with pytest.raises(groq.RateLimitError) as error:
        await client.chat.completions.create(model=f"{MODEL}~e429~ra4", messages=user("x"))
    assert (
        error.value.response.headers["retry-after"] == "4"
        and error.value.response.headers["retry-after-ms"] == "4000"
    )
    emulator.reset()
    async with make(emulator, max_retries=2) as retrying:
        reply = await retrying.chat.completions.create(model=f"{MODEL}~e429x2~ra0.01", messages=user("x"))
    assert reply.choices[0].finish_reason == "stop" and len(emulator.recorded("groq")) == 3


async def test_context_and_policy(client):
    with pytest.raises(groq.BadRequestError) as error:
        await client.chat.completions.create(model=f"{MODEL}~ctx", messages=user("x"))
    assert error.value.body["error"]["code"] == "context_length_exceeded"
    assert error.value.body["error"]["message"] == "Please reduce the length of the messages or completion."
    with pytest.raises(groq.BadRequestError) as error:
        await client.chat.completions.create(model=f"{MODEL}~policy", messages=user("x"))
    assert error.value.body["error"]["code"] == "content_policy_violation"


async def test_connection_faults(emulator, client):
    with pytest.raises(groq.APIConnectionError):
        await client.chat.completions.create(model=f"{MODEL}~reset", messages=user("x"))
    async with make(emulator, timeout=0.3) as impatient:
        with pytest.raises(groq.APITimeoutError):
            await impatient.chat.completions.create(model=f"{MODEL}~hang", messages=user("x"))
        # the groq SDK does not wrap errors raised while a stream is read: httpx's own arrive
        stream = await impatient.chat.completions.create(
            model=f"{MODEL}~stall1", messages=user("a b"), stream=True
        )
        with pytest.raises(httpx.ReadTimeout):
            await collect(stream)
    seen = []
    with pytest.raises(httpx.ReadError):
        async for chunk in await client.chat.completions.create(
            model=f"{MODEL}~cut2", messages=user("a b"), stream=True
        ):
            seen.append(chunk)
    assert len(seen) == 2


async def test_stream_content_faults(emulator, client):
    with pytest.raises(json.JSONDecodeError):
        await collect(
            await client.chat.completions.create(model=f"{MODEL}~bad2", messages=user("a b"), stream=True)
        )
    seen = []
    with pytest.raises(groq.APIError) as error:
        async for chunk in await client.chat.completions.create(
            model=f"{MODEL}~e503~cut1", messages=user("a"), stream=True
        ):
            seen.append(chunk)
    assert len(seen) == 1 and "over capacity" in error.value.message
    headers = {"authorization": f"Bearer {emulator.keys['groq']}"}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{emulator.base_urls['groq']}/openai/v1/chat/completions",
            json={"model": f"{MODEL}~nodone", "messages": user("a"), "stream": True},
            headers=headers,
        )
    assert "[DONE]" not in response.text and '"finish_reason":"stop"' in response.text


async def test_slow_and_long(client):
    started = time.monotonic()
    reply = await client.chat.completions.create(model=f"{MODEL}~slow0.2~long12", messages=user("x"))
    assert time.monotonic() - started >= 0.2 and reply.usage.completion_tokens == 12


async def test_transcription_formats(emulator, client):
    audio = b"RIFF" + b"\x00" * 60
    result = await client.audio.transcriptions.create(
        model="whisper-large-v3", file=("talk.wav", audio, "audio/wav")
    )
    assert result.text == "transcript of talk.wav (64 bytes) [model=whisper-large-v3 language=en]"
    assert result.x_groq["id"].startswith("req_")  # an extra field the SDK keeps
    (recorded,) = emulator.recorded("groq", "/audio/transcriptions")
    assert recorded.path == "/groq/openai/v1/audio/transcriptions" and audio in recorded.body
    text = await client.audio.transcriptions.create(
        model="whisper-large-v3-turbo", file=("talk.wav", audio), response_format="text", language="de"
    )
    assert text == "transcript of talk.wav (64 bytes) [model=whisper-large-v3-turbo language=de]"
    verbose = await client.audio.transcriptions.create(
        model="whisper-large-v3",
        file=("talk.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert verbose.language == "English" and verbose.words[0]["word"] == "transcript"
    assert not hasattr(verbose, "segments") and verbose.duration == 0.002


async def test_transcription_faults_and_translation(client):
    with pytest.raises(groq.RateLimitError):
        await client.audio.transcriptions.create(model="whisper-large-v3~e429", file=("a.wav", b"x"))
    translated = await client.audio.translations.create(model="whisper-large-v3", file=("fr.wav", b"xy"))
    assert translated.text == "translation of fr.wav (2 bytes) [model=whisper-large-v3 language=en]"
