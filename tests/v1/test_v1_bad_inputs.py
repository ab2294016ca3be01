"""No input to /v1 yields a server error: mutations of valid bodies (tests/test_bad_inputs.py's), answered
with a success, a 4xx in OpenAI's error shape, or the 502/504 of a provider failure; a stream always ends
with ``data: [DONE]`` or an error event."""

import base64
import json
import random

import pytest

from tests.test_bad_inputs import UPSTREAM, mutations, post

pytestmark = pytest.mark.django_db(transaction=True)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


def body(provider: str, stream: bool) -> dict:
    return {
        "model": f"{provider}/m1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\": \"UTC\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "12:00"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "clock", "description": "d",
                                                    "parameters": {"type": "object", "properties": {}}}}],
        "temperature": 0.2, "max_tokens": 50, "stop": ["x"], "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


def judged(status: int, text: str, content_type: str) -> str | None:
    if status >= 500 and status not in UPSTREAM:
        return f"{status}: {text[:300]}"
    if status >= 400:
        try:
            error = json.loads(text)["error"]
            assert isinstance(error["message"], str) and "type" in error and "param" in error
        except (ValueError, AssertionError, TypeError, KeyError):
            return f"{status} without OpenAI's error object: {text[:300]}"
    elif content_type.startswith("text/event-stream"):
        last = text.strip().split("\n\n")[-1]
        if last != "data: [DONE]" and "error" not in json.loads(last.removeprefix("data: ")):
            return f"a stream ended without [DONE] or an error: {text[-300:]}"
    return None


@pytest.mark.parametrize("stream", [False, True])
async def test_mutated_bodies_get_an_answer_or_a_4xx_never_a_server_error(user, configs, stream):
    rnd, wrong = random.Random(13), []
    for provider in ["openai", "google"]:
        valid = body(provider, stream)
        response = await user.post("/v1/chat/completions", json=valid, timeout=30)
        assert response.status_code == 200, response.text
        for mutated in mutations(valid, rnd):
            response = await post(user, "/v1/chat/completions", mutated)
            text = (await response.aread()).decode(errors="replace")
            problem = judged(response.status_code, text, response.headers.get("content-type", ""))
            if problem:
                wrong.append(f"{json.dumps(mutated)[:300]} -> {problem}")
    assert wrong == []
