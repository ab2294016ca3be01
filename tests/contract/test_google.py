"""Contract tests: the official google-genai async client (``genai.Client(...).aio``) against the Gemini emulator."""

from __future__ import annotations

import base64
import json
import time

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.emulator.core import search_results
from tests.emulator.google_emu import BAD_KEY

# Bytes whose base64 holds "+" and "/", so the URL-safe alphabet the SDK uses shows as "-" and "_".
IMAGE = b"\xfb\xff\xfe\x89PNG"
MODEL = "gemini-2.5-flash"
ADD = types.FunctionDeclaration(
    name="add", description="add", parameters={"type": "OBJECT", "properties": {}}
)
MUL = types.FunctionDeclaration(
    name="mul", description="mul", parameters={"type": "OBJECT", "properties": {}}
)
SEARCH = types.Tool(google_search=types.GoogleSearch())


def client(emulator, key: str | None = None, **options) -> genai.client.AsyncClient:
    options.setdefault("timeout", 5000)  # milliseconds
    # httpx's transport, named as the adapter names it: with aiohttp installed, google-genai would use that.
    options.setdefault("async_client_args", {"transport": httpx2.AsyncHTTPTransport()})
    http_options = types.HttpOptions(base_url=emulator.base_urls["google"], **options)
    return genai.Client(api_key=key or emulator.keys["google"], http_options=http_options).aio


async def chunks_of(stream) -> list[types.GenerateContentResponse]:
    return [chunk async for chunk in await stream]


# ---- plain answers ----------------------------------------------------------------------------


async def test_reply_echoes_what_arrived_and_request_is_recorded_as_sent(emulator):
    config = types.GenerateContentConfig(
        system_instruction="be brief", temperature=0.2, max_output_tokens=50, top_p=0.9
    )
    contents = ["hello there", types.Part.from_bytes(data=IMAGE, mime_type="image/png")]
    response = await client(emulator).models.generate_content(model=MODEL, contents=contents, config=config)
    expected = f"hello there [model={MODEL} system=be brief images=1:image/png temperature=0.2 max_tokens=50]"
    assert response.text == expected
    (candidate,) = response.candidates
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage.prompt_token_count == 4  # "be brief" + "hello there"
    assert usage.candidates_token_count == len(expected.split())
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == MODEL and response.response_id

    (request,) = emulator.recorded("google", ":generateContent")
    assert request.path.endswith(f"/v1/models/{MODEL}:generateContent")
    assert request.headers["x-goog-api-key"] == "[redacted]" and "key=" not in request.query
    body = request.json()
    assert body["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 50}
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    blob = body["contents"][0]["parts"][1]["inlineData"]
    assert blob["mime_type"] == "image/png"
    assert blob["data"] == base64.urlsafe_b64encode(IMAGE).decode()


async def test_old_sdk_and_rest_request_forms(emulator):
    """v1beta paths (google-genai 2.x), ?key=, snake_case fields, mimeType and standard base64."""
    old = await client(emulator, api_version="v1beta").models.generate_content(model=MODEL, contents="hi")
    assert old.text.startswith("hi [")
    assert emulator.recorded("google")[0].path.endswith(f"/v1beta/models/{MODEL}:generateContent")
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "what is this"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(IMAGE).decode()}},
                    {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0="}},
                ],
            }
        ],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "generation_config": {"temperature": 1, "max_output_tokens": 40},
    }
    async with httpx.AsyncClient(base_url=emulator.base_urls["google"]) as http:
        response = await http.post(
            f"/v1beta/models/{MODEL}:generateContent?key={emulator.keys['google']}", json=body
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    parsed = types.GenerateContentResponse.model_validate(response.json())
    assert parsed.text == (
        f"what is this [model={MODEL} system=sys images=2:image/jpeg,application/pdf temperature=1 max_tokens=40]"
    )


async def test_invalid_base64_is_rejected(emulator):
    body = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]}
    async with httpx.AsyncClient(base_url=emulator.base_urls["google"]) as http:
        response = await http.post(
            f"/v1/models/{MODEL}:generateContent",
            json=body,
            headers={"x-goog-api-key": emulator.keys["google"]},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "Base64 decoding failed" in error["message"]
    assert "contents[0].parts[0].inline_data.data" in error["message"]


async def test_long_answer_and_max_tokens_finish(emulator):
    sdk = client(emulator)
    long = await sdk.models.generate_content(model=f"{MODEL}~long12", contents="hi")
    assert len(long.text.split()) == 12 and long.candidates[0].finish_reason == types.FinishReason.STOP
    config = types.GenerateContentConfig(max_output_tokens=5)
    cut = await sdk.models.generate_content(model=f"{MODEL}~long50", contents="hi", config=config)
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert len(cut.text.split()) == 5 and cut.usage_metadata.candidates_token_count == 5


async def test_count_tokens(emulator):
    counted = await client(emulator).models.count_tokens(model=MODEL, contents="a b c")
    assert counted.total_tokens == 3
    assert emulator.recorded("google", ":countTokens")


# ---- tools ------------------------------------------------------------------------------------


async def test_function_calling_loop_until_final_text(emulator):
    sdk = client(emulator)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[ADD, MUL])])
    history = [types.Content(role="user", parts=[types.Part(text='CALL add {"a": 1}; CALL mul {"b": 2}')])]
    first = await sdk.models.generate_content(model=MODEL, contents=history, config=config)
    (call,) = first.function_calls
    assert call.name == "add" and call.args == {"a": 1}
    assert first.candidates[0].finish_reason == types.FinishReason.STOP

    history += [
        first.candidates[0].content,
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="add", response={"result": "3"})]
        ),
    ]
    second = await sdk.models.generate_content(model=MODEL, contents=history, config=config)
    assert second.function_calls[0].name == "mul" and second.function_calls[0].args == {"b": 2}

    history += [
        second.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="mul", response={"v": 9})]),
    ]
    final = await sdk.models.generate_content(model=MODEL, contents=history, config=config)
    assert final.function_calls is None
    assert final.text.endswith('tool_results=3 | {"v":9}]')
    sent = emulator.recorded("google")[-1].json()
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "add"
    assert sent["contents"][-1]["parts"][0]["functionResponse"] == {"name": "mul", "response": {"v": 9}}


async def test_gemini_3_wants_its_thought_signatures_back(emulator):
    sdk = client(emulator)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[ADD])])
    question = types.Content(role="user", parts=[types.Part(text='CALL add {"a": 1}')])
    first = await sdk.models.generate_content(model="gemini-3-flash-preview", contents=[question], config=config)
    (part,) = first.candidates[0].content.parts
    assert part.function_call.name == "add" and isinstance(part.thought_signature, bytes) and part.thought_signature
    answer = types.Content(role="user", parts=[types.Part.from_function_response(name="add", response={"r": 1})])

    # The SDK replays the model's content as it came, signature included.
    final = await sdk.models.generate_content(
        model="gemini-3-flash-preview", contents=[question, first.candidates[0].content, answer], config=config
    )
    assert final.text.endswith("tool_results={\"r\":1}]")
    sent = emulator.recorded("google")[-1].json()["contents"][1]["parts"][0]
    assert base64.urlsafe_b64decode(sent["thoughtSignature"]) == part.thought_signature

    unsigned = types.Content(role="model", parts=[types.Part(function_call=part.function_call)])
    with pytest.raises(errors.ClientError) as refused:
        await sdk.models.generate_content(
            model="gemini-3-flash-preview", contents=[question, unsigned, answer], config=config
        )
    assert refused.value.code == 400 and "missing a thought_signature" in refused.value.message
    forged = types.Content(role="model", parts=[types.Part(function_call=part.function_call, thought_signature=b"x")])
    with pytest.raises(errors.ClientError, match="Corrupted thought signature"):
        await sdk.models.generate_content(
            model="gemini-3-flash-preview", contents=[question, forged, answer], config=config
        )
    # Google's bypass for calls the model did not make, and older models, which do not check.
    bypass = types.Part(function_call=part.function_call,
                        thought_signature=base64.urlsafe_b64decode("skip_thought_signature_validator"))
    for model, content in [("gemini-3-flash-preview", types.Content(role="model", parts=[bypass])), (MODEL, unsigned)]:
        assert (await sdk.models.generate_content(model=model, contents=[question, content, answer], config=config)).text


async def test_function_call_streams_whole_in_one_chunk(emulator):
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[ADD])])
    chunks = await chunks_of(
        client(emulator).models.generate_content_stream(
            model=MODEL, contents='CALL add {"a": 5}', config=config
        )
    )
    (chunk,) = chunks
    assert chunk.function_calls[0].name == "add" and chunk.function_calls[0].args == {"a": 5}
    assert chunk.candidates[0].finish_reason == types.FinishReason.STOP


# ---- streaming --------------------------------------------------------------------------------


async def test_stream_chunks_hold_new_text_and_last_one_finishes(emulator):
    chunks = await chunks_of(
        client(emulator).models.generate_content_stream(model=MODEL, contents="hello there")
    )
    text = "".join(chunk.text for chunk in chunks)
    assert text == f"hello there [model={MODEL} system=- images=0 temperature=- max_tokens=-]"
    assert len(chunks) == len(text.split())
    assert [c.candidates[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[0].usage_metadata.candidates_token_count is None
    assert chunks[-1].usage_metadata.candidates_token_count == len(text.split())
    (request,) = emulator.recorded("google")
    assert request.path.endswith(f"/v1/models/{MODEL}:streamGenerateContent") and request.query == "alt=sse"


async def test_stream_wire_format(emulator):
    async with httpx.AsyncClient(base_url=emulator.base_urls["google"]) as http:
        response = await http.post(
            f"/v1/models/{MODEL}:streamGenerateContent?alt=sse",
            json={"contents": [{"parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": emulator.keys["google"]},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert (
        response.text.endswith("\r\n\r\n") and "event:" not in response.text and "[DONE]" not in response.text
    )
    events = response.text.split("\r\n\r\n")[:-1]
    assert all(event.startswith("data: ") for event in events)
    assert "finishReason" in json.loads(events[-1][6:])["candidates"][0]


async def test_google_search_grounding(emulator):
    config = types.GenerateContentConfig(tools=[SEARCH])
    response = await client(emulator).models.generate_content(
        model=MODEL, contents="weather in Paris", config=config
    )
    grounding = response.candidates[0].grounding_metadata
    hits = search_results("weather in Paris")
    assert grounding.web_search_queries == ["weather in Paris"]
    assert [(c.web.uri, c.web.title) for c in grounding.grounding_chunks] == [
        (h["url"], h["title"]) for h in hits
    ]
    (support,) = grounding.grounding_supports
    assert support.grounding_chunk_indices == [0, 1]
    assert support.segment.start_index is None  # proto3 JSON omits a zero offset
    assert support.segment.end_index == len(response.text.encode()) and support.segment.text == response.text
    assert response.usage_metadata.tool_use_prompt_token_count > 0
    assert emulator.recorded("google")[0].json()["tools"] == [{"googleSearch": {}}]

    chunks = await chunks_of(
        client(emulator).models.generate_content_stream(
            model=MODEL, contents="weather in Paris", config=config
        )
    )
    assert all(c.candidates[0].grounding_metadata is None for c in chunks[:-1])
    assert chunks[-1].candidates[0].grounding_metadata.web_search_queries == ["weather in Paris"]


# ---- errors -----------------------------------------------------------------------------------

ERRORS = [
    ("e400", errors.ClientError, "INVALID_ARGUMENT"),
    ("e401", errors.ClientError, "UNAUTHENTICATED"),
    ("e403", errors.ClientError, "PERMISSION_DENIED"),
    ("e404", errors.ClientError, "NOT_FOUND"),
    ("e429", errors.ClientError, "RESOURCE_EXHAUSTED"),
    ("e500", errors.ServerError, "INTERNAL"),
    ("e503", errors.ServerError, "UNAVAILABLE"),
    ("e504", errors.ServerError, "DEADLINE_EXCEEDED"),
]


@pytest.mark.parametrize(("fault", "error_class", "status"), ERRORS)
async def test_error_statuses(emulator, fault, error_class, status):
    with pytest.raises(error_class) as caught:
        await client(emulator).models.generate_content(model=f"{MODEL}~{fault}", contents="hi")
    error = caught.value
    assert error.code == int(fault[1:]) and error.status == status and error.message
    assert error.details["error"]["code"] == error.code
    assert "retry-after" not in error.response.headers


async def test_rate_limit_retry_delay_is_in_the_body(emulator):
    """Gemini sends no Retry-After header; the delay is google.rpc.RetryInfo.retryDelay."""
    with pytest.raises(errors.ClientError) as caught:
        await chunks_of(
            client(emulator).models.generate_content_stream(model=f"{MODEL}~e429~ra2.5", contents="hi")
        )
    assert caught.value.code == 429 and "retry-after" not in caught.value.response.headers
    details = {d["@type"].rsplit(".", 1)[1]: d for d in caught.value.details["error"]["details"]}
    assert details["RetryInfo"]["retryDelay"] == "2.500s"
    assert details["QuotaFailure"]["violations"][0]["quotaDimensions"]["model"] == MODEL


async def test_context_length_error(emulator):
    with pytest.raises(errors.ClientError) as caught:
        await client(emulator).models.generate_content(model=f"{MODEL}~ctx", contents="hi")
    assert caught.value.status == "INVALID_ARGUMENT"
    assert (
        caught.value.message
        == "The input token count (1048578) exceeds the maximum number of tokens allowed (1048576)."
    )


async def test_policy_blocks_the_prompt(emulator):
    sdk = client(emulator)
    response = await sdk.models.generate_content(model=f"{MODEL}~policy", contents="hi")
    assert response.candidates is None and response.text is None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert any(rating.blocked for rating in response.prompt_feedback.safety_ratings)
    (chunk,) = await chunks_of(sdk.models.generate_content_stream(model=f"{MODEL}~policy", contents="hi"))
    assert chunk.prompt_feedback.block_reason == types.BlockedReason.SAFETY


async def test_wrong_and_missing_key(emulator):
    with pytest.raises(errors.ClientError) as caught:
        await client(emulator, key="AIza-wrong").models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        400,
        "INVALID_ARGUMENT",
        BAD_KEY,
    )
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    async with httpx.AsyncClient(base_url=emulator.base_urls["google"]) as http:
        response = await http.post(f"/v1/models/{MODEL}:generateContent", json={"contents": []})
    assert response.status_code == 403 and response.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_unknown_model_is_not_found(emulator):
    with pytest.raises(errors.ClientError) as caught:
        await client(emulator).models.generate_content(model=f"{MODEL}~nosuchfault", contents="hi")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"


async def test_no_retries_by_default_but_opt_in_retries_work(emulator):
    with pytest.raises(errors.ServerError):
        await client(emulator).models.generate_content(model=f"{MODEL}~e503x2", contents="hi")
    assert len(emulator.recorded("google")) == 1
    emulator.reset()
    retry = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0)
    response = await client(emulator, retry_options=retry).models.generate_content(
        model=f"{MODEL}~e503x2", contents="hi"
    )
    assert response.text.startswith("hi [") and len(emulator.recorded("google")) == 3


async def test_reset_is_a_raw_read_error(emulator):
    with pytest.raises(httpx2.ReadError):
        await client(emulator).models.generate_content(model=f"{MODEL}~reset", contents="hi")


async def test_hang_times_out(emulator):
    started = time.monotonic()
    with pytest.raises(httpx2.ReadTimeout):
        await client(emulator, timeout=300).models.generate_content(model=f"{MODEL}~hang", contents="hi")
    assert time.monotonic() - started < 6  # the 300 ms timeout, not the hang (which never ends)


async def test_latency_slow_and_gap(emulator):
    sdk = client(emulator)
    started = time.monotonic()
    await sdk.models.generate_content(model=f"{MODEL}~lat150", contents="hi")
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    chunks = await chunks_of(
        sdk.models.generate_content_stream(model=f"{MODEL}~slow0.2~gap30", contents="hi")
    )
    assert time.monotonic() - started >= 0.2 + 0.03 * (len(chunks) - 1)


# ---- stream faults ----------------------------------------------------------------------------


async def collect_until_error(stream, error_class) -> list[str]:
    seen: list[str] = []
    iterator = await stream
    with pytest.raises(error_class) as caught:
        async for chunk in iterator:
            seen.append(chunk.text)
    await iterator.aclose()
    return seen, caught.value


async def test_cut_stream_raises_read_error(emulator):
    stream = client(emulator).models.generate_content_stream(model=f"{MODEL}~cut2", contents="hello there")
    seen, _ = await collect_until_error(stream, httpx2.ReadError)
    assert seen == ["hello ", "there "]


async def test_stall_stream_times_out(emulator):
    stream = client(emulator, timeout=300).models.generate_content_stream(
        model=f"{MODEL}~stall2", contents="hi you"
    )
    seen, _ = await collect_until_error(stream, httpx2.ReadTimeout)
    assert seen == ["hi ", "you "]


async def test_bad_chunk_is_not_json(emulator):
    stream = client(emulator).models.generate_content_stream(model=f"{MODEL}~bad1", contents="hi you")
    seen, error = await collect_until_error(stream, errors.UnknownApiResponseError)
    assert seen == ["hi "] and isinstance(error, ValueError)


async def test_nodone_drops_the_finish_reason(emulator):
    chunks = await chunks_of(
        client(emulator).models.generate_content_stream(model=f"{MODEL}~nodone", contents="hi")
    )
    assert "".join(c.text for c in chunks).startswith("hi [")
    assert all(c.candidates[0].finish_reason is None for c in chunks)
    assert chunks[-1].usage_metadata.candidates_token_count is None


async def test_mid_stream_error_chunk(emulator):
    sdk = client(emulator)
    stream = sdk.models.generate_content_stream(model=f"{MODEL}~e503x1~cut2", contents="hello there")
    seen, error = await collect_until_error(stream, errors.ServerError)
    assert seen == ["hello ", "there "] and (error.code, error.status) == (503, "UNAVAILABLE")
    chunks = await chunks_of(
        sdk.models.generate_content_stream(model=f"{MODEL}~e503x1~cut2", contents="hello there")
    )
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
