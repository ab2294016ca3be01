"""Client-side function tools: the model's call comes back to the client, which sends the result back."""

import base64
import json

import pytest

from tests.agent.helpers import chain, stream, text_of
from tests.conftest import CHAT_PROVIDERS
from tests.emulator.mcp_emu import SECRET
from tests.tools.helpers import ask, calls, lines_of, mcp

pytestmark = pytest.mark.django_db(transaction=True)

CLOCK = {"kind": "function", "name": "clock", "description": "The current time in a time zone",
         "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
ASK_TIME = calls(("clock", {"tz": "UTC"}))
GEMINI_3 = "gemini-3-flash-preview"  # the emulator refuses its calls back without their signature, as Google does
UNSIGNED = "skip_thought_signature_validator"
THINKING = {"max_tokens": 2048, "provider_options": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}


def answered(call: dict, result: str = "12:00") -> list[dict]:
    """The turns a client appends to send a call's result back."""
    return [{"role": "model", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": result}]


def declared(emulator, provider: str) -> dict:
    """The function declaration as the provider received it, in its own field names."""
    tools = emulator.recorded(provider)[0].json()["tools"]
    if provider == "anthropic":
        return {"name": tools[0]["name"], "description": tools[0]["description"], "parameters": tools[0]["input_schema"]}
    if provider == "google":
        (declaration,) = tools[0]["functionDeclarations"]
        schema = declaration.pop("parameters_json_schema")  # the spelling google-genai sends
        return {**declaration, "parameters": schema}
    return tools[0]["function"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_function_call_round_trip(user, configs, emulator, provider):
    response = await user.post("/agent/run", json=ask(provider, ASK_TIME, CLOCK))
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["finish_reason"] == "tool_calls" and first["output"] == "" and first["tool_results"] == []
    (call,) = first["tool_calls"]
    assert call["name"] == "clock" and call["arguments"] == {"tz": "UTC"} and call["id"]
    assert declared(emulator, provider) == {k: v for k, v in CLOCK.items() if k != "kind"}

    body = ask(provider, ASK_TIME, CLOCK)
    body["messages"] += answered(call)
    second = (await user.post("/agent/run", json=body)).json()
    assert second["finish_reason"] == "stop" and second["tool_calls"] == []
    assert second["output"].endswith("tool_results=12:00]")  # the provider read the result of its call


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_function_call_round_trip_streamed(user, configs, provider):
    status, lines, _ = await stream(user, ask(provider, ASK_TIME, CLOCK))
    assert status == 200
    assert [line["type"] for line in lines] == ["start", "tool_call", "done"]
    call = {k: lines[1][k] for k in ("id", "name", "arguments", "signature")}
    assert call["name"] == "clock" and call["arguments"] == {"tz": "UTC"}
    assert lines[-1]["finish_reason"] == "tool_calls" and lines[-1]["tool_calls"] == [call]

    body = ask(provider, ASK_TIME, CLOCK)
    body["messages"] += answered(call, "noon")
    status, lines, _ = await stream(user, body)
    assert text_of(lines).endswith("tool_results=noon]") and lines[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_results_reach_each_provider_in_its_own_form(user, configs, emulator, provider):
    # Two calls of one model turn, answered together: Anthropic and Gemini want them in one message.
    first_call, second_call = {"id": "c1", "name": "clock", "arguments": {"tz": "UTC"}}, {
        "id": "c2", "name": "clock", "arguments": {"tz": "Asia/Tokyo"}}
    body = ask(provider, "what time is it?", CLOCK)
    body["messages"] += [{"role": "assistant", "content": "", "tool_calls": [first_call, second_call]},
                         {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
                         {"role": "tool", "tool_call_id": "c2", "content": "21:00"}]
    answer = (await user.post("/agent/run", json=body)).json()
    assert answer["output"].endswith("tool_results=12:00 | 21:00]")
    wire = emulator.recorded(provider)[0].json()
    if provider == "anthropic":
        assert wire["messages"][1] == {"role": "assistant", "content": [
            {"type": "tool_use", "id": "c1", "name": "clock", "input": {"tz": "UTC"}},
            {"type": "tool_use", "id": "c2", "name": "clock", "input": {"tz": "Asia/Tokyo"}}]}
        assert wire["messages"][2] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": "12:00"},
            {"type": "tool_result", "tool_use_id": "c2", "content": "21:00"}]}
    elif provider == "google":
        assert [p["functionCall"]["name"] for p in wire["contents"][1]["parts"]] == ["clock", "clock"]
        # Calls Gemini did not sign: the first of the step carries Google's documented bypass.
        assert [p.get("thoughtSignature") for p in wire["contents"][1]["parts"]] == [UNSIGNED, None]
        assert wire["contents"][2] == {"role": "user", "parts": [
            {"functionResponse": {"name": "clock", "response": {"result": "12:00"}}},
            {"functionResponse": {"name": "clock", "response": {"result": "21:00"}}}]}
    else:
        assert [c["id"] for c in wire["messages"][1]["tool_calls"]] == ["c1", "c2"]
        assert wire["messages"][2:] == [{"role": "tool", "tool_call_id": "c1", "content": "12:00"},
                                        {"role": "tool", "tool_call_id": "c2", "content": "21:00"}]


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_gemini_3_gets_its_thought_signature_back_through_the_client(user, configs, emulator, path):
    if path == "/agent/run":
        (call,) = (await user.post(path, json=ask("google", ASK_TIME, CLOCK, model=GEMINI_3))).json()["tool_calls"]
    else:
        _, lines, _ = await stream(user, ask("google", ASK_TIME, CLOCK, model=GEMINI_3))
        call = {k: v for k, v in lines_of(lines, "tool_call")[0].items() if k != "type"}
    assert call["signature"] and call["signature"] != UNSIGNED
    body = ask("google", ASK_TIME, CLOCK, model=GEMINI_3)
    body["messages"] += answered(call)
    second = await user.post("/agent/run", json=body)
    assert second.status_code == 200, second.text
    assert second.json()["output"].endswith("tool_results=12:00]")
    (part,) = emulator.recorded("google")[-1].json()["contents"][1]["parts"]
    assert part["thoughtSignature"] not in (None, UNSIGNED)  # its own: the emulated Gemini takes no other


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_claudes_thinking_comes_back_with_its_call_through_the_client(user, configs, emulator, path):
    # With thinking on, Anthropic refuses tool results whose calling turn lost its thinking block.
    body = ask("anthropic", ASK_TIME, CLOCK, gen_config=THINKING)
    if path == "/agent/run":
        (call,) = (await user.post(path, json=body)).json()["tool_calls"]
    else:
        _, lines, _ = await stream(user, body)
        call = {k: v for k, v in lines_of(lines, "tool_call")[0].items() if k != "type"}
    assert call["signature"]
    issued = emulator.recorded("anthropic")[-1]  # the request; the thinking block is in the answer
    assert issued.json()["thinking"] == THINKING["provider_options"]["thinking"]

    body["messages"] += answered(call)
    second = await user.post("/agent/run", json=body)
    assert second.status_code == 200, second.text
    assert second.json()["output"].endswith("tool_results=12:00]")
    turn = emulator.recorded("anthropic")[-1].json()["messages"][1]
    assert [b["type"] for b in turn["content"]] == ["thinking", "tool_use"]
    assert turn["content"][0]["signature"] and turn["content"][0]["thinking"].startswith("The user asks")

    body["messages"][-2]["tool_calls"][0]["signature"] = None  # a client that dropped it
    dropped = await user.post("/agent/run", json=body)
    assert dropped.status_code == 400
    assert "anthropic" in dropped.json()["detail"] and "must start with a thinking block" in dropped.json()["detail"]


async def test_other_providers_calls_reach_gemini_3_with_the_bypass(user, configs, emulator):
    # A fallback hands Gemini a conversation whose calls another model made: no signature of its own.
    first = (await user.post("/agent/run", json=ask("openai", ASK_TIME, CLOCK))).json()
    (call,) = first["tool_calls"]
    assert call["signature"] is None
    body = chain(ask("openai", ASK_TIME, CLOCK, model="m~e503"), ask("google", ASK_TIME, CLOCK, model=GEMINI_3))
    for request in body["requests"]:
        request["messages"] += answered(call)
    answer = await user.post("/agent/run", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider_uid"] == "google" and answer.json()["output"].endswith("tool_results=12:00]")
    (part,) = emulator.recorded("google")[-1].json()["contents"][1]["parts"]
    assert part["thoughtSignature"] == UNSIGNED


async def test_a_signature_gemini_did_not_make_is_its_error_reported(user, configs, emulator):
    forged = base64.urlsafe_b64encode(json.dumps({"google": "Zm9yZ2Vk"}).encode()).decode()
    body = ask("google", ASK_TIME, CLOCK, model=GEMINI_3)
    body["messages"] += answered({"id": "c1", "name": "clock", "arguments": {"tz": "UTC"}, "signature": forged})
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "google" in detail and GEMINI_3 in detail and "thought signature" in detail.lower()


@pytest.mark.parametrize("signature", ["not base64!", "a", "abcde", 7])
async def test_a_malformed_signature_is_refused_before_any_call(user, configs, emulator, signature):
    body = ask("google", ASK_TIME, CLOCK, model=GEMINI_3)
    body["messages"] += answered({"id": "c1", "name": "clock", "arguments": {}, "signature": signature})
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400 and "signature" in response.json()["detail"]
    assert emulator.recorded("google") == []


async def test_mcp_and_function_tools_in_one_run(user, configs, emulator, loopback_mcp):
    # The proxy runs the MCP call; the function call comes back to the client with what the proxy ran.
    text = calls(("tool_add", {"a": 20, "b": 22}), ("clock", {"tz": "UTC"}))
    server = mcp(emulator, protected=True, kwargs={"headers": {"Authorization": f"Bearer {SECRET}"}})
    first = (await user.post("/agent/run", json=ask("anthropic", text, CLOCK, server))).json()
    assert first["finish_reason"] == "tool_calls"
    (ran,) = first["tool_results"]
    (call,) = first["tool_calls"]
    assert (ran["name"], ran["content"], call["name"]) == ("tool_add", "42", "clock")

    body = ask("anthropic", text, CLOCK, server)
    body["messages"] += [
        {"role": "model", "content": "", "tool_calls": [{k: ran[k] for k in ("id", "name", "arguments")}]},
        {"role": "tool", "tool_call_id": ran["id"], "content": ran["content"]},
        *answered(call),
    ]
    status, lines, _ = await stream(user, body)
    assert lines_of(lines, "tool_call", "tool_result") == []
    assert text_of(lines).endswith("tool_results=42 | 12:00]")
