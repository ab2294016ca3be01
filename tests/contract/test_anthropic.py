"""Contract tests: the official AsyncAnthropic SDK against the Anthropic emulator."""

from __future__ import annotations

import base64
import json
import time

import anthropic
import httpx
import httpx2
import pytest

from tests.emulator.core import search_results

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
HELLO = [{"role": "user", "content": "hello"}]
ADD_TOOL = {"name": "add", "description": "add", "input_schema": {"type": "object", "properties": {}}}
MUL_TOOL = {"name": "mul", "description": "mul", "input_schema": {"type": "object", "properties": {}}}


def client(emulator, **options) -> anthropic.AsyncAnthropic:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 5)
    options.setdefault("api_key", emulator.keys["anthropic"])
    return anthropic.AsyncAnthropic(base_url=emulator.base_urls["anthropic"], **options)


async def create(emulator, model: str = "claude-x", *, sdk=None, **params):
    params.setdefault("max_tokens", 50)
    params.setdefault("messages", HELLO)
    return await (sdk or client(emulator)).messages.create(model=model, **params)


async def raw_events(stream) -> list:
    return [event async for event in stream]


# ---- plain answers ----------------------------------------------------------------------------


async def test_reply_echoes_what_arrived_and_request_is_recorded_as_sent(emulator):
    message = await client(emulator).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"temperature": 0.2, "top_p": 0.9},
    )
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert message.stop_reason == "end_turn"
    expected = "hello there [model=claude-sonnet-4-6 system=be brief images=0 temperature=0.2 max_tokens=50]"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected
    assert message.usage.input_tokens == 4  # "be brief" + "hello there"
    assert message.usage.output_tokens == len(expected.split())
    assert message.usage.service_tier == "standard"

    (request,) = emulator.recorded("anthropic", "/v1/messages")
    assert request.method == "POST" and request.path.endswith("/v1/messages")
    assert request.headers["authorization"] == "[redacted]"
    assert request.headers["anthropic-version"] == "2026-10-21"
    body = request.json()
    assert body["model"] == "claude-sonnet-4-6" and body["max_tokens"] == 50
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9
    assert body["system"] == "be brief" and "stream" not in body


async def test_sdk_1x_request_form_is_accepted(emulator):
    """x-api-key + anthropic-version 2023-06-01, as anthropic < 2.0 sends them."""
    async with httpx.AsyncClient(base_url=emulator.base_urls["anthropic"]) as http:
        response = await http.post(
            "/v1/messages",
            headers={"x-api-key": emulator.keys["anthropic"], "anthropic-version": "2023-06-01"},
            json={"model": "claude-3-opus", "max_tokens": 20, "messages": HELLO},
        )
        wrong = await http.post(
            "/v1/messages",
            headers={"x-api-key": "sk-ant-wrong", "anthropic-version": "2023-06-01"},
            json={"model": "claude-3-opus", "max_tokens": 20, "messages": HELLO},
        )
    assert response.status_code == 200
    message = anthropic.types.Message.model_validate(response.json())
    assert message.content[0].text.startswith("hello [model=claude-3-opus ")
    assert response.headers["request-id"].startswith("req_")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert emulator.recorded("anthropic")[0].headers["x-api-key"] == "[redacted]"


async def test_system_as_text_blocks(emulator):
    message = await client(emulator).messages.create(
        model="claude-x",
        max_tokens=50,
        system=[{"type": "text", "text": "rule one"}, {"type": "text", "text": "rule two"}],
        messages=HELLO,
    )
    assert "system=rule one\nrule two " in message.content[0].text
    assert emulator.recorded("anthropic")[0].json()["system"][1] == {"type": "text", "text": "rule two"}


async def test_images_and_documents_arrive_in_order(emulator):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "what is this"},
    ]
    message = await client(emulator).messages.create(
        model="claude-x", max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert "images=3:image/png,application/pdf,image/jpeg " in message.content[0].text
    assert message.content[0].text.startswith("what is this [")
    sent = emulator.recorded("anthropic")[0].json()["messages"][0]["content"]
    assert sent[0]["source"]["data"] == PNG and sent[1]["source"]["media_type"] == "application/pdf"


async def test_invalid_base64_image_is_rejected(emulator):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}}
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client(emulator).messages.create(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": content}]
        )
    assert caught.value.type == "invalid_request_error"
    assert "base64" in caught.value.api_message


async def test_long_answer_and_max_tokens_stop(emulator):
    long = await client(emulator).messages.create(model="claude-x~long12", max_tokens=100, messages=HELLO)
    assert len(long.content[0].text.split()) == 12 and long.stop_reason == "end_turn"
    cut = await client(emulator).messages.create(model="claude-x~long50", max_tokens=5, messages=HELLO)
    assert cut.stop_reason == "max_tokens"
    assert len(cut.content[0].text.split()) == 5 and cut.usage.output_tokens == 5


async def test_stop_sequence(emulator):
    message = await create(emulator, stop_sequences=["[model"])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "[model"
    assert message.content[0].text == "hello "


async def test_count_tokens(emulator):
    counted = await client(emulator).messages.count_tokens(model="claude-x", system="a b", messages=HELLO)
    assert counted.input_tokens == 3
    assert emulator.recorded("anthropic", "/v1/messages/count_tokens")


# ---- tools ------------------------------------------------------------------------------------


async def test_tool_use_loop_until_final_text(emulator):
    sdk = client(emulator)
    messages = [{"role": "user", "content": 'CALL add {"a": 1, "b": 2}; CALL mul {"a": 3}'}]
    first = await sdk.messages.create(
        model="claude-x", max_tokens=100, messages=messages, tools=[ADD_TOOL, MUL_TOOL]
    )
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.name == "add" and call.input == {"a": 1, "b": 2} and call.id.startswith("toolu_")

    messages += [
        {"role": "assistant", "content": [call.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "3"}]},
    ]
    second = await sdk.messages.create(
        model="claude-x", max_tokens=100, messages=messages, tools=[ADD_TOOL, MUL_TOOL]
    )
    assert second.stop_reason == "tool_use" and second.content[0].name == "mul"

    messages += [
        {"role": "assistant", "content": [second.content[0].model_dump()]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": second.content[0].id,
                    "content": [{"type": "text", "text": "9"}],
                }
            ],
        },
    ]
    final = await sdk.messages.create(
        model="claude-x", max_tokens=100, messages=messages, tools=[ADD_TOOL, MUL_TOOL]
    )
    assert final.stop_reason == "end_turn"
    assert final.content[0].text.endswith("tool_results=3 | 9]")


async def test_extended_thinking_leads_each_answer_and_must_come_back_with_its_tool_use(emulator):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    ask = [{"role": "user", "content": 'CALL add {"a": 1}'}]
    sdk = client(emulator)
    first = await create(emulator, sdk=sdk, max_tokens=2048, tools=[ADD_TOOL], messages=ask, extra_body={"thinking": thinking})
    assert [b.type for b in first.content] == ["thinking", "tool_use"] and first.stop_reason == "tool_use"
    assert first.content[0].signature and "CALL add" in first.content[0].thinking

    # The SDK's own stream accumulator rebuilds the same blocks from thinking_delta and signature_delta.
    async with sdk.messages.stream(model="claude-x", max_tokens=2048, tools=[ADD_TOOL], messages=ask,
                                   extra_body={"thinking": thinking}) as stream:
        streamed = await stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "tool_use"]
    assert streamed.content[0].signature and streamed.content[0].thinking == first.content[0].thinking

    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "3"}]}
    kept = [*ask, {"role": "assistant", "content": [b.to_dict() for b in first.content]}, result]
    final = await create(emulator, sdk=sdk, max_tokens=2048, tools=[ADD_TOOL], messages=kept, extra_body={"thinking": thinking})
    assert [b.type for b in final.content] == ["thinking", "text"] and final.content[1].text.endswith("tool_results=3]")

    dropped = [*ask, {"role": "assistant", "content": [first.content[1].to_dict()]}, result]
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        await create(emulator, sdk=sdk, max_tokens=2048, tools=[ADD_TOOL], messages=dropped, extra_body={"thinking": thinking})
    forged = [*ask, {"role": "assistant", "content": [{**first.content[0].to_dict(), "signature": "Zm9yZ2Vk"},
                                                       first.content[1].to_dict()]}, result]
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        await create(emulator, sdk=sdk, max_tokens=2048, tools=[ADD_TOOL], messages=forged, extra_body={"thinking": thinking})
    # Without thinking, nothing is required.
    assert (await create(emulator, sdk=sdk, tools=[ADD_TOOL], messages=dropped)).content[0].type == "text"


async def test_tool_not_offered_is_not_called(emulator):
    message = await client(emulator).messages.create(
        model="claude-x",
        max_tokens=50,
        messages=[{"role": "user", "content": "CALL add {}"}],
        tools=[MUL_TOOL],
    )
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"


async def test_tool_use_streams_input_json_delta(emulator):
    messages = [{"role": "user", "content": 'CALL add {"a": 1, "b": 22, "note": "long enough to split"}'}]
    stream = await client(emulator).messages.create(
        model="claude-x", max_tokens=100, messages=messages, tools=[ADD_TOOL], stream=True
    )
    events = await raw_events(stream)
    start = next(e for e in events if e.type == "content_block_start")
    assert start.content_block.type == "tool_use" and start.content_block.input == {}
    fragments = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
    assert fragments[0] == "" and len(fragments) > 2
    assert json.loads("".join(fragments)) == {"a": 1, "b": 22, "note": "long enough to split"}
    assert [e for e in events if e.type == "message_delta"][0].delta.stop_reason == "tool_use"

    async with client(emulator).messages.stream(
        model="claude-x", max_tokens=100, messages=messages, tools=[ADD_TOOL]
    ) as helper:
        final = await helper.get_final_message()
    assert final.content[0].input == {"a": 1, "b": 22, "note": "long enough to split"}
    assert final.stop_reason == "tool_use"


# ---- streaming --------------------------------------------------------------------------------


async def test_stream_event_order_and_text(emulator):
    stream = await create(emulator, stream=True)
    events = await raw_events(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[0].message.usage.input_tokens == 1 and events[0].message.stop_reason is None
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "hello [model=claude-x system=- images=0 temperature=- max_tokens=50]"
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == len(text.split())
    assert emulator.recorded("anthropic")[0].json()["stream"] is True


async def test_stream_wire_format_has_event_lines_and_ping(emulator):
    """The SDK hides ping and needs event: lines; check the raw bytes."""
    async with httpx.AsyncClient(base_url=emulator.base_urls["anthropic"]) as http:
        response = await http.post(
            "/v1/messages",
            headers={"authorization": f"Bearer {emulator.keys['anthropic']}"},
            json={"model": "claude-x", "max_tokens": 20, "messages": HELLO, "stream": True},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    names = []
    for block in blocks:
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
        names.append(name)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop" and "[DONE]" not in response.text


async def test_stream_helper_gives_final_text(emulator):
    async with client(emulator).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text
    assert final.content[0].text.startswith("hello [model=claude-x ")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == len(final.content[0].text.split())


# ---- web search -------------------------------------------------------------------------------


@pytest.mark.parametrize("tool_type", ["web_search_20250305", "web_search_20260318"])
async def test_web_search_blocks_and_citations(emulator, tool_type):
    tools = [{"type": tool_type, "name": "web_search", "max_uses": 3}]
    message = await client(emulator).messages.create(
        model="claude-x",
        max_tokens=50,
        messages=[{"role": "user", "content": "weather in Paris"}],
        tools=tools,
    )
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = message.content
    assert use.name == "web_search" and use.input == {"query": "weather in Paris"}
    assert result.tool_use_id == use.id
    hits = search_results("weather in Paris")
    assert [r.url for r in result.content] == [h["url"] for h in hits]
    assert [c.type for c in text.citations] == ["web_search_result_location"] * len(hits)
    assert [c.url for c in text.citations] == [h["url"] for h in hits]
    assert text.citations[0].cited_text == hits[0]["snippet"]
    assert text.text.startswith("weather in Paris [")
    assert message.usage.server_tool_use.web_search_requests == 1


async def test_web_search_streams_for_raw_and_helper(emulator):
    tools = [{"type": "web_search_20260209", "name": "web_search"}]
    messages = [{"role": "user", "content": "weather in Paris"}]
    events = await raw_events(
        await client(emulator).messages.create(
            model="claude-x", max_tokens=50, messages=messages, tools=tools, stream=True
        )
    )
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [b.type for b in starts] == ["server_tool_use", "web_search_tool_result", "text"]
    assert len(starts[1].content) == 2  # the results arrive whole in the block start
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert "input_json_delta" in deltas and deltas.count("citations_delta") == 2
    assert deltas.index("citations_delta") < deltas.index("text_delta")
    assert [e for e in events if e.type == "message_delta"][0].usage.server_tool_use.web_search_requests == 1

    async with client(emulator).messages.stream(
        model="claude-x", max_tokens=50, messages=messages, tools=tools
    ) as s:
        final = await s.get_final_message()
    assert final.content[0].input == {"query": "weather in Paris"}
    assert [c.url for c in final.content[2].citations] == [
        h["url"] for h in search_results("weather in Paris")
    ]
    assert final.usage.server_tool_use.web_search_requests == 1


# ---- errors -----------------------------------------------------------------------------------

ERRORS = [
    ("e400", anthropic.BadRequestError, "invalid_request_error"),
    ("e401", anthropic.AuthenticationError, "authentication_error"),
    ("e403", anthropic.PermissionDeniedError, "permission_error"),
    ("e429", anthropic.RateLimitError, "rate_limit_error"),
    ("e500", anthropic.InternalServerError, "api_error"),
    ("e503", anthropic.ServiceUnavailableError, "api_error"),
    ("e529", anthropic.OverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize(("fault", "error_class", "error_type"), ERRORS)
async def test_error_statuses(emulator, fault, error_class, error_type):
    with pytest.raises(error_class) as caught:
        await create(emulator, f"claude-x~{fault}")
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == int(fault[1:])
    assert error.type == error_type
    assert error.body["type"] == "error" and error.body["request_id"] == error.request_id
    assert error.request_id.startswith("req_")
    assert "retry-after" not in error.response.headers


async def test_overloaded_is_an_internal_server_error(emulator):
    with pytest.raises(anthropic.InternalServerError) as caught:
        await create(emulator, "claude-x~e529")
    assert isinstance(caught.value, anthropic.OverloadedError)
    assert caught.value.api_message == "Overloaded"


async def test_rate_limit_with_retry_after(emulator):
    with pytest.raises(anthropic.RateLimitError) as caught:
        await create(emulator, "claude-x~e429~ra3", stream=True)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "3000"


async def test_context_length_and_policy_errors(emulator):
    sdk = client(emulator)
    with pytest.raises(anthropic.BadRequestError) as ctx:
        await create(emulator, "claude-x~ctx", sdk=sdk)
    assert ctx.value.type == "invalid_request_error"
    assert ctx.value.api_message == "prompt is too long: 200002 tokens > 200000 maximum"
    with pytest.raises(anthropic.BadRequestError) as policy:
        await create(emulator, "claude-x~policy", sdk=sdk)
    assert policy.value.api_message == "Output blocked by content filtering policy"


async def test_wrong_key_and_unknown_model(emulator):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await create(emulator, sdk=client(emulator, api_key="sk-ant-wrong"))
    assert caught.value.api_message == "Invalid bearer token"
    with pytest.raises(anthropic.NotFoundError) as missing:
        await create(emulator, "claude-x~nosuchfault")
    assert (
        missing.value.type == "not_found_error" and missing.value.api_message == "model: claude-x~nosuchfault"
    )


async def test_missing_max_tokens_is_invalid(emulator):
    async with httpx.AsyncClient(base_url=emulator.base_urls["anthropic"]) as http:
        response = await http.post(
            "/v1/messages",
            headers={"authorization": f"Bearer {emulator.keys['anthropic']}"},
            json={"model": "claude-x", "messages": HELLO},
        )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


async def test_sdk_retries_transient_errors_obeying_retry_after_ms(emulator):
    # The header asks for 1.2 s; the SDK's own backoff would wait at most 0.5 s, then 1 s: each gap of
    # at least 1.2 s (the emulator's clock) is the header obeyed. Lower bounds: load cannot break them.
    message = await create(emulator, "claude-x~e529x2~ra1.2", sdk=client(emulator, max_retries=2))
    assert message.content[0].text.startswith("hello ")
    attempts = emulator.recorded("anthropic")
    assert [r.headers["x-stainless-retry-count"] for r in attempts] == ["0", "1", "2"]
    assert attempts[1].at - attempts[0].at >= 1.15 and attempts[2].at - attempts[1].at >= 1.15


async def test_reset_is_a_connection_error_and_heals(emulator):
    with pytest.raises(anthropic.APIConnectionError) as caught:
        await create(emulator, "claude-x~reset")
    assert not isinstance(caught.value, anthropic.APITimeoutError)
    healed = await create(emulator, "claude-x~resetx1", sdk=client(emulator, max_retries=1))
    assert healed.stop_reason == "end_turn"


async def test_hang_times_out(emulator):
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        await create(emulator, "claude-x~hang", sdk=client(emulator, timeout=0.3))
    assert time.monotonic() - started < 6  # the 0.3 s timeout, not the hang (which never ends)


async def test_latency_and_slow(emulator):
    started = time.monotonic()
    await create(emulator, "claude-x~lat150")
    assert time.monotonic() - started >= 0.15
    stream = await create(emulator, "claude-x~slow0.2", stream=True)
    started = time.monotonic()
    await stream.__anext__()
    assert time.monotonic() - started >= 0.15
    await stream.close()


async def test_gap_between_stream_events(emulator):
    stream = await create(emulator, "claude-x~gap30", stream=True)
    started = time.monotonic()
    events = await raw_events(stream)
    # Every SSE event but the first is preceded by the gap (the SDK hides one ping).
    assert time.monotonic() - started >= 0.03 * len(events)


# ---- stream faults ----------------------------------------------------------------------------


async def test_cut_stream_raises_read_error(emulator):
    stream = await create(emulator, "claude-x~cut4", stream=True)
    seen = []
    with pytest.raises(httpx2.ReadError):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]  # event 2 was the ping


async def test_stall_stream_times_out(emulator):
    stream = await create(emulator, "claude-x~stall3", stream=True, sdk=client(emulator, timeout=0.3))
    seen = []
    with pytest.raises(httpx2.ReadTimeout):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start"]


async def test_bad_event_is_not_json(emulator):
    stream = await create(emulator, "claude-x~bad3", stream=True)
    with pytest.raises(json.JSONDecodeError):
        await raw_events(stream)


async def test_nodone_omits_message_stop(emulator):
    stream = await create(emulator, "claude-x~nodone", stream=True)
    kinds = [e.type for e in await raw_events(stream)]
    assert kinds[-1] == "message_delta" and "message_stop" not in kinds


async def test_mid_stream_error_event(emulator):
    sdk = client(emulator)
    stream = await create(emulator, "claude-x~e529x1~cut3", stream=True, sdk=sdk)
    with pytest.raises(anthropic.APIStatusError) as caught:
        await raw_events(stream)
    assert caught.value.status_code == 200
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    retry = await create(emulator, "claude-x~e529x1~cut3", stream=True, sdk=sdk)
    assert [e.type for e in await raw_events(retry)][-1] == "message_stop"


async def test_beta_client_and_beta_query(emulator):
    """anthropic 2.14 beta.messages posts /v1/messages + anthropic-beta; older SDKs added ?beta=true."""
    message = await client(emulator).beta.messages.create(
        model="claude-x", max_tokens=50, messages=HELLO, betas=["files-api-2025-04-14"]
    )
    assert message.content[0].text.startswith("hello [model=claude-x ")
    (request,) = emulator.recorded("anthropic")
    assert (
        request.path.endswith("/v1/messages") and request.headers["anthropic-beta"] == "files-api-2025-04-14"
    )
    async with httpx.AsyncClient(base_url=emulator.base_urls["anthropic"]) as http:
        response = await http.post(
            "/v1/messages?beta=true",
            headers={"x-api-key": emulator.keys["anthropic"]},
            json={"model": "claude-x", "max_tokens": 20, "messages": HELLO},
        )
    assert response.status_code == 200 and response.json()["type"] == "message"
