"""Bad tool input: a clear 400 naming the field, and nothing reaches a provider or an MCP server."""

import pytest

from tests.tools.helpers import ask

pytestmark = pytest.mark.django_db(transaction=True)

MCP = {"kind": "mcp_streamable", "url": "https://mcp.example.com/mcp"}
FN = {"kind": "function", "name": "clock"}
CALL = {"id": "c1", "name": "clock", "arguments": {}}


def conversation(*messages: dict) -> dict:
    return {"provider_uid": "openai", "model": "m", "messages": [{"role": "user", "content": "hi"}, *messages]}


BAD = [
    ("unknown kind", ask("openai", "hi", {"kind": "shell"}), "kind"),
    ("search size zero", ask("openai", "hi", {"kind": "web_search", "search_context_size": 0}), "search_context_size"),
    ("search size huge", ask("openai", "hi", {"kind": "web_search", "search_context_size": 99}), "search_context_size"),
    ("unknown search option", ask("openai", "hi", {"kind": "web_search", "kwargs": {"safe": True}}), "safe"),
    ("bad domain", ask("openai", "hi", {"kind": "web_search", "kwargs": {"allowed_domains": ["a b"]}}), "allowed_domains"),
    ("two searches", ask("openai", "hi", {"kind": "web_search"}, {"kind": "web_search"}), "web_search"),
    ("function name with a space", ask("openai", "hi", {**FN, "name": "get time"}), "name"),
    ("function name with a digit first", ask("openai", "hi", {**FN, "name": "1clock"}), "name"),
    ("parameters not an object", ask("openai", "hi", {**FN, "parameters": {"type": "string"}}), "parameters"),
    ("properties not an object", ask("openai", "hi", {**FN, "parameters": {"properties": []}}), "parameters"),
    ("function twice", ask("openai", "hi", FN, FN), "twice"),
    ("mcp without url", ask("openai", "hi", {"kind": "mcp_streamable"}), "url"),
    ("mcp ftp url", ask("openai", "hi", {**MCP, "url": "ftp://mcp.example.com/x"}), "url"),
    ("mcp url with credentials", ask("openai", "hi", {**MCP, "url": "https://u:p@mcp.example.com/mcp"}), "credentials"),
    ("mcp bad port", ask("openai", "hi", {**MCP, "url": "https://mcp.example.com:99999/mcp"}), "url"),
    ("mcp bad prefix", ask("openai", "hi", {**MCP, "prefix": "my tools"}), "prefix"),
    ("mcp zero timeout", ask("openai", "hi", {**MCP, "timeout": 0}), "timeout"),
    ("mcp unknown option", ask("openai", "hi", {**MCP, "kwargs": {"token": "x"}}), "token"),
    ("mcp header with newline", ask("openai", "hi", {**MCP, "kwargs": {"headers": {"X-A": "a\r\nb"}}}), "header"),
    ("tool message without id", conversation({"role": "tool", "content": "x"}), "tool_call_id"),
    ("tool message answering nothing", conversation({"role": "tool", "tool_call_id": "c9", "content": "x"}), "answers no"),
    ("tool_call_id on a user message", conversation({"role": "user", "content": "x", "tool_call_id": "c1"}), "tool_call_id"),
    ("tool_calls on a user message", conversation({"role": "user", "content": "x", "tool_calls": [CALL]}), "tool_calls"),
    ("tool call with a bad name", conversation({"role": "model", "content": "", "tool_calls": [{**CALL, "name": "a b"}]}), "name"),
    ("binary tool message", conversation({"role": "model", "content": "", "tool_calls": [CALL]},
                                         {"role": "tool", "tool_call_id": "c1", "content": "aGk=",
                                          "mime_type": "image/png"}), "text"),
]


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
@pytest.mark.parametrize(("case", "body", "word"), BAD, ids=[c[0] for c in BAD])
async def test_bad_tool_input_is_a_400_and_reaches_nothing(user, configs, emulator, path, case, body, word):
    response = await user.post(path, json=body)
    assert response.status_code == 400, response.text
    assert word in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_chain_with_tools_is_checked_request_by_request(user, configs, emulator):
    body = {"requests": [ask("openai", "hi", FN), ask("groq", "hi", {**FN, "parameters": {"type": "array"}})]}
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400 and "requests.1.tools.0" in response.json()["detail"]
    assert emulator.recorded() == []
