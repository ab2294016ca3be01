"""Web search: each provider's own search tool, its citations, and refusals before any call."""

import pytest

from tests.agent.helpers import chain, statuses, stream, text_of
from tests.emulator.core import search_results
from tests.tools.helpers import ask, calls, lines_of

pytestmark = pytest.mark.django_db(transaction=True)

QUERY = "weather in Paris"
HITS = [{"url": h["url"], "title": h["title"]} for h in search_results(QUERY)]
LOCATION = {"country": "FR", "city": "Paris"}


def search(size: int | None = None, **kwargs) -> dict:
    tool = {"kind": "web_search", "kwargs": kwargs}
    if size is not None:
        tool["search_context_size"] = size
    return tool


def sent(emulator, provider: str, path: str = "") -> dict:
    (request,) = emulator.recorded(provider, path)
    return request.json()


async def test_openai_searches_through_the_responses_api(user, configs, emulator):
    body = ask("openai", QUERY, search(2, allowed_domains=["example.com"], user_location=LOCATION))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    wire = sent(emulator, "openai", "/responses")
    assert wire["store"] is False  # the proxy keeps no conversation at OpenAI
    assert wire["tools"] == [{"type": "web_search", "search_context_size": "low",
                              "filters": {"allowed_domains": ["example.com"]},
                              "user_location": {"type": "approximate", **LOCATION}}]
    assert wire["input"] == [{"role": "user", "content": QUERY}]
    assert emulator.recorded("openai", "/chat/completions") == []


@pytest.mark.parametrize(("size", "level"), [(1, "low"), (3, "low"), (4, "medium"), (6, "medium"), (7, "high"), (20, "high")])
async def test_openai_context_size_levels(user, configs, emulator, size, level):
    assert (await user.post("/agent/run", json=ask("openai", QUERY, search(size)))).status_code == 200
    assert sent(emulator, "openai")["tools"][0]["search_context_size"] == level


async def test_anthropic_search_is_its_server_tool_with_max_uses(user, configs, emulator):
    body = ask("anthropic", QUERY, search(5, blocked_domains=["spam.example"], user_location=LOCATION))
    assert (await user.post("/agent/run", json=body)).status_code == 200
    assert sent(emulator, "anthropic")["tools"] == [{
        "type": "web_search_20250305", "name": "web_search", "max_uses": 5,
        "blocked_domains": ["spam.example"], "user_location": {"type": "approximate", **LOCATION},
    }]


async def test_gemini_search_is_google_search_grounding(user, configs, emulator):
    # Gemini has no size knob and no location; both are hints, so they are not refused.
    body = ask("google", QUERY, search(9, user_location=LOCATION))
    assert (await user.post("/agent/run", json=body)).status_code == 200
    assert sent(emulator, "google")["tools"] == [{"googleSearch": {}}]


async def test_groq_searches_with_a_compound_model_and_its_search_settings(user, configs, emulator):
    body = ask("groq", QUERY, search(5, allowed_domains=["example.com"], blocked_domains=["spam.example"],
                                     user_location={"country": "france", "city": "Paris"}), model="groq/compound")
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    wire = sent(emulator, "groq")
    assert wire["search_settings"] == {"include_domains": ["example.com"], "exclude_domains": ["spam.example"],
                                       "country": "france"}
    assert "tools" not in wire  # compound models search on their own


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", None), ("anthropic", None), ("google", None), ("groq", "groq/compound"), ("groq", "groq/compound-mini"),
])
async def test_citations_come_back_in_the_answer_and_the_stream(user, configs, provider, model):
    body = ask(provider, QUERY, search(3), **({"model": model} if model else {}))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["citations"] == HITS
    assert answer["finish_reason"] == "stop" and answer["output"].startswith(QUERY)

    status, lines, _ = await stream(user, body)
    assert status == 200
    assert [{"url": c["url"], "title": c["title"]} for c in lines_of(lines, "citation")] == HITS
    assert text_of(lines) == answer["output"]
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "done"


async def test_a_groq_model_that_cannot_search_is_refused_before_any_call(user, configs, emulator):
    for path in ("/agent/run", "/agent/run_stream"):
        response = await user.post(path, json=ask("groq", QUERY, search(), model="llama-3.3-70b-versatile"))
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert "groq/llama-3.3-70b-versatile" in detail and "compound" in detail
    assert emulator.recorded("groq") == []


@pytest.mark.parametrize(("provider", "kwargs", "word"), [
    ("openai", {"blocked_domains": ["spam.example"]}, "blocked_domains"),
    ("google", {"allowed_domains": ["example.com"]}, "filter domains"),
    ("google", {"blocked_domains": ["spam.example"]}, "filter domains"),
])
async def test_a_filter_the_provider_cannot_apply_is_refused_not_ignored(user, configs, emulator, provider, kwargs, word):
    response = await user.post("/agent/run", json=ask(provider, QUERY, search(**kwargs)))
    assert response.status_code == 400
    assert word in response.json()["detail"] and provider in response.json()["detail"]
    assert emulator.recorded(provider) == []


async def test_a_chain_moves_past_a_provider_that_cannot_search(user, configs, emulator):
    body = chain(ask("groq", QUERY, search()), ask("google", QUERY, search()))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["provider_uid"] == "google" and answer["citations"] == HITS
    assert statuses(answer["attempts"]) == ["error", "ok"]
    assert answer["attempts"][0]["error_type"] == "Unsupported"

    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == "google"
    assert statuses(lines[-1]["attempts"]) == ["error", "ok"]
    assert emulator.recorded("groq") == []


async def test_openai_search_with_function_tools_round_trips_through_the_responses_api(user, configs, emulator):
    clock = {"kind": "function", "name": "clock", "description": "The time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}}}
    text = calls(("clock", {"tz": "UTC"}))
    first = (await user.post("/agent/run", json=ask("openai", text, search(), clock))).json()
    assert first["finish_reason"] == "tool_calls"
    (call,) = first["tool_calls"]
    assert (call["name"], call["arguments"]) == ("clock", {"tz": "UTC"})

    body = ask("openai", text, search(), clock)
    body["messages"] += [{"role": "model", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": call["id"], "content": "12:00"}]
    second = (await user.post("/agent/run", json=body)).json()
    assert second["finish_reason"] == "stop" and "tool_results=12:00" in second["output"]
    assert second["citations"] == [{"url": h["url"], "title": h["title"]} for h in search_results(text)]
    wire = emulator.recorded("openai", "/responses")[-1].json()
    assert wire["input"][1:] == [
        {"type": "function_call", "call_id": call["id"], "name": "clock", "arguments": '{"tz": "UTC"}'},
        {"type": "function_call_output", "call_id": call["id"], "output": "12:00"},
    ]
    assert wire["tools"][0] == {"type": "function", "name": "clock", "description": "The time",
                                "parameters": clock["parameters"], "strict": False}
