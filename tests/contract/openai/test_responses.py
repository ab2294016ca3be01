"""Contract tests: the official async OpenAI SDK against the emulator's Responses API."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import responses as rtypes

from tests.emulator.core import search_results

PNG = "data:image/png;base64,iVBORw0KGgo="
ADD_TOOL = {"type": "function", "name": "add", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
async def client(emulator):
    async with openai.AsyncOpenAI(
        api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"], max_retries=0, timeout=5
    ) as sdk:
        yield sdk


async def events_of(stream) -> list:
    return [event async for event in stream]


async def test_string_input_and_instructions(emulator, client):
    response = await client.responses.create(
        model="gpt-4o", input="hello", instructions="be brief", temperature=0.5, max_output_tokens=64
    )
    assert isinstance(response, rtypes.Response) and response.status == "completed"
    assert (
        response.output_text == "hello [model=gpt-4o system=be brief images=0 temperature=0.5 max_tokens=64]"
    )
    (message,) = response.output
    assert isinstance(message, rtypes.ResponseOutputMessage) and message.role == "assistant"
    assert response.usage.input_tokens == 3 and response.usage.output_tokens == 7
    assert response.usage.total_tokens == 10 and response.id.startswith("resp_")
    assert response.instructions == "be brief" and response.model == "gpt-4o"
    (recorded,) = emulator.recorded("openai", "/responses")
    assert recorded.path == "/openai/v1/responses" and recorded.headers["authorization"] == "[redacted]"
    assert recorded.json() == {
        "model": "gpt-4o",
        "input": "hello",
        "instructions": "be brief",
        "temperature": 0.5,
        "max_output_tokens": 64,
    }


async def test_item_input_with_image_file_and_system_role(client):
    response = await client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": PNG, "detail": "auto"},
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,JVBE",
                    },
                ],
            },
        ],
    )
    assert response.output_text == (
        "look [model=gpt-4o system=sys images=2:image/png,application/pdf temperature=- max_tokens=-]"
    )


async def test_function_call_then_output(client):
    first = await client.responses.create(model="gpt-4o", input='CALL add {"a": 2}', tools=[ADD_TOOL])
    (call,) = first.output
    assert (
        isinstance(call, rtypes.ResponseFunctionToolCall)
        and call.name == "add"
        and call.status == "completed"
    )
    assert json.loads(call.arguments) == {"a": 2} and call.call_id.startswith("call_")
    assert first.output_text == ""
    second = await client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": 'CALL add {"a": 2}'},
            {"type": "function_call", "call_id": call.call_id, "name": "add", "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "4"},
        ],
        tools=[ADD_TOOL],
    )
    assert second.output_text.endswith("tool_results=4]")


async def test_web_search_with_citations(client):
    query = "weather in Paris"
    response = await client.responses.create(
        model="gpt-4o",
        input=query,
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
    )
    search, message = response.output
    assert isinstance(search, rtypes.ResponseFunctionWebSearch) and search.status == "completed"
    assert search.action.query == query
    hits = search_results(query)
    assert [s.url for s in search.action.sources] == [h["url"] for h in hits]
    text = message.content[0].text
    annotations = message.content[0].annotations
    assert [a.type for a in annotations] == ["url_citation", "url_citation"]
    assert [(a.url, a.title, text[a.start_index : a.end_index]) for a in annotations] == [
        (h["url"], h["title"], h["snippet"]) for h in hits
    ]
    assert response.tools[0].type == "web_search"


async def test_web_search_without_include_has_no_sources(client):
    response = await client.responses.create(
        model="gpt-4o", input="q", tools=[{"type": "web_search_preview"}]
    )
    assert response.output[0].action.sources is None


async def test_max_output_tokens_makes_it_incomplete(client):
    response = await client.responses.create(model="gpt-4o", input="a b c d e", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "a b"


async def test_stream_events_are_typed_and_numbered(emulator, client):
    stream = await client.responses.create(
        model="gpt-4o", input="hi", tools=[{"type": "web_search"}], stream=True
    )
    events = await events_of(stream)
    types = [e.type for e in events]
    assert types[:7] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert types[7:9] == ["response.output_item.added", "response.content_part.added"]
    assert types[-6:] == [
        "response.output_text.annotation.added",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[0], rtypes.ResponseCreatedEvent) and events[0].response.status == "in_progress"
    deltas = [e for e in events if isinstance(e, rtypes.ResponseTextDeltaEvent)]
    done = next(e for e in events if isinstance(e, rtypes.ResponseTextDoneEvent))
    assert "".join(d.delta for d in deltas) == done.text
    assert (
        isinstance(events[-1], rtypes.ResponseCompletedEvent) and events[-1].response.output_text == done.text
    )
    assert events[-1].response.usage.output_tokens > 0


async def test_stream_wire_has_event_lines_and_no_done(emulator):
    headers = {"authorization": f"Bearer {emulator.keys['openai']}"}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{emulator.base_urls['openai']}/responses",
            json={"model": "gpt-4o", "input": "hi", "stream": True},
            headers=headers,
        )
    blocks = [b for b in response.text.split("\n\n") if b]
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]
    assert "[DONE]" not in response.text and blocks[-1].startswith("event: response.completed")


async def test_stream_helper_final_response(client):
    async with client.responses.stream(model="gpt-4o", input="yo") as stream:
        async for _event in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text.startswith("yo [model=gpt-4o")


async def test_stream_function_call_events(client):
    stream = await client.responses.create(
        model="gpt-4o", input='CALL add {"a": 1}', tools=[ADD_TOOL], stream=True
    )
    events = await events_of(stream)
    added = events[2]
    assert isinstance(added, rtypes.ResponseOutputItemAddedEvent) and added.item.type == "function_call"
    assert added.item.arguments == "" and added.item.name == "add"
    deltas = [e.delta for e in events if isinstance(e, rtypes.ResponseFunctionCallArgumentsDeltaEvent)]
    (done,) = [e for e in events if isinstance(e, rtypes.ResponseFunctionCallArgumentsDoneEvent)]
    assert "".join(deltas) == done.arguments == '{"a":1}' and len(deltas) > 1
    assert events[-1].response.output[0].call_id == added.item.call_id


async def test_errors_map_to_sdk_exceptions(client):
    with pytest.raises(openai.RateLimitError) as error:
        await client.responses.create(model="gpt-4o~e429~ra2", input="x")
    assert error.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.BadRequestError) as error:
        await client.responses.create(model="gpt-4o~ctx", input="x")
    assert error.value.code == "context_length_exceeded" and error.value.param == "input"
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="gpt-4o~e500", input="x", stream=True)


async def test_stream_faults(client):
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for event in await client.responses.create(model="gpt-4o~cut3", input="a b", stream=True):
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress", "response.output_item.added"]
    with pytest.raises(json.JSONDecodeError):
        await events_of(await client.responses.create(model="gpt-4o~bad0", input="a", stream=True))
    events = await events_of(await client.responses.create(model="gpt-4o~nodone", input="a", stream=True))
    assert events[-1].type == "response.output_item.done"


async def test_in_band_failure(client):
    events = await events_of(
        await client.responses.create(model="gpt-4o~e500~cut4", input="a b", stream=True)
    )
    assert [e.type for e in events[-3:]] == ["response.content_part.added", "error", "response.failed"]
    error, failed = events[-2:]
    assert isinstance(error, rtypes.ResponseErrorEvent) and error.code == "server_error"
    assert isinstance(failed, rtypes.ResponseFailedEvent) and failed.response.status == "failed"
    assert failed.response.error.code == "server_error" and failed.sequence_number == 5
    # the SDK's stream helper insists on response.completed
    with pytest.raises(RuntimeError, match="response.completed"):
        async with client.responses.stream(model="gpt-4o~e500~cut4", input="a b") as stream:
            async for _event in stream:
                pass
            await stream.get_final_response()
