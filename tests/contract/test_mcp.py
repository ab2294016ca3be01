"""Contract tests: the official mcp 2.3.0 client against the emulator's MCP server (the SDK's own)."""

from __future__ import annotations

import json
import time

import httpx
import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, REQUEST_TIMEOUT
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from tests.emulator.mcp_emu import SECRET, SERVER_NAME, protected_url

TOOLS = {"add", "lookup", "fail", "sleep"}


def methods(emulator) -> list[str]:
    return [r.json().get("method") for r in emulator.recorded("mcp") if r.method == "POST"]


def leaves(group: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; the mcp client raises from task groups."""
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in leaves(inner)]
    return [group]


def test_base_url_is_the_streamable_http_endpoint(emulator):
    url = emulator.base_urls["mcp"]
    assert url.endswith("/mcp/mcp")
    assert protected_url(url) == url.removesuffix("/mcp") + "/protected/mcp"


async def test_handshake_session_lists_and_calls_every_tool(emulator):
    url = emulator.base_urls["mcp"]
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        assert init.server_info.name == SERVER_NAME
        assert init.capabilities.tools is not None

        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        assert listed["add"].input_schema["properties"] == {
            "a": {"title": "A", "type": "integer"},
            "b": {"title": "B", "type": "integer"},
        }
        assert listed["add"].input_schema["required"] == ["a", "b"]
        assert listed["add"].output_schema["properties"]["result"]["type"] == "integer"
        assert listed["sleep"].input_schema["properties"]["seconds"]["type"] == "number"
        assert listed["lookup"].description

        added = await session.call_tool("add", {"a": 2, "b": 3})
        assert added.is_error is False
        assert added.content[0].text == "5"
        assert added.structured_content == {"result": 5}

        found = await session.call_tool("lookup", {"key": "pi"})
        assert (found.is_error, found.structured_content) == (False, {"result": "3.14159"})

        missing = await session.call_tool("lookup", {"key": "nope"})
        assert missing.is_error is True
        assert missing.content[0].text == "Error executing tool lookup: unknown key 'nope'"

        failed = await session.call_tool("fail", {"message": "boom"})
        assert failed.is_error is True
        assert failed.content[0].text == "Error executing tool fail: boom"

        slept = await session.call_tool("sleep", {"seconds": 0.01})
        assert slept.structured_content == {"result": "slept 0.01s"}

    assert methods(emulator)[:3] == ["initialize", "notifications/initialized", "tools/list"]
    posts = [r for r in emulator.recorded("mcp") if r.method == "POST"]
    assert all(r.path == "/mcp/mcp" for r in posts)
    assert "mcp-session-id" not in posts[0].headers
    session_ids = {r.headers["mcp-session-id"] for r in posts[1:]}
    assert len(session_ids) == 1
    call = next(r.json() for r in posts if r.json().get("method") == "tools/call")
    assert call["params"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert emulator.recorded("mcp")[-1].method == "DELETE"  # the client ends its session


async def test_modern_client_probes_server_discover_and_needs_no_session(emulator):
    async with Client(emulator.base_urls["mcp"]) as client:
        result = await client.call_tool("add", {"a": 20, "b": 22})
        failed = await client.call_tool("fail", {"message": "nope"})

    assert result.structured_content == {"result": 42}
    assert failed.is_error is True and "nope" in failed.content[0].text
    sent = methods(emulator)
    assert sent[0] == "server/discover"
    assert "initialize" not in sent
    for request in emulator.recorded("mcp"):
        assert request.headers["mcp-protocol-version"] in MODERN_PROTOCOL_VERSIONS
        assert "mcp-session-id" not in request.headers


async def test_legacy_mode_client_runs_the_handshake(emulator):
    async with Client(emulator.base_urls["mcp"], mode="legacy") as client:
        tools = await client.list_tools()
    assert {tool.name for tool in tools.tools} == TOOLS
    assert methods(emulator)[0] == "initialize"


async def test_sleep_times_out_with_a_short_read_timeout_and_the_session_survives(emulator):
    url = emulator.base_urls["mcp"]
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        started = time.monotonic()
        with pytest.raises(MCPError) as info:
            await session.call_tool("sleep", {"seconds": 30}, read_timeout_seconds=0.3)
        assert 0.3 <= time.monotonic() - started < 8  # the 0.3 s timeout, far from the tool's 30 s
        assert info.value.error.code == REQUEST_TIMEOUT

        after = await session.call_tool("add", {"a": 1, "b": 1})
        assert after.structured_content == {"result": 2}

    cancel = next(r.json() for r in emulator.recorded("mcp") if b"notifications/cancelled" in r.body)
    assert cancel["params"]["requestId"] is not None


async def test_protected_endpoint_refuses_a_client_without_the_header(emulator):
    url = protected_url(emulator.base_urls["mcp"])
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        with pytest.raises(MCPError) as info:
            await session.initialize()
    assert info.value.error.code == INTERNAL_ERROR

    with pytest.raises(BaseExceptionGroup) as group:
        async with Client(url):
            pass
    assert any(isinstance(leaf, MCPError) for leaf in leaves(group.value))


async def test_protected_endpoint_answers_401_with_the_sdk_bearer_error(emulator):
    url = protected_url(emulator.base_urls["mcp"])
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    headers = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        missing = await http.post(url, json=message, headers=headers)
        wrong = await http.post(url, json=message, headers={**headers, "authorization": "Bearer nope"})

    for response in (missing, wrong):
        assert response.status_code == 401
        assert json.loads(response.text) == {
            "error": "invalid_token",
            "error_description": "Authentication required",
        }
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_protected_endpoint_works_with_the_bearer_secret_and_records_it_redacted(emulator):
    url = protected_url(emulator.base_urls["mcp"])
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {SECRET}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("lookup", {"key": "qalby"})

    assert result.structured_content == {"result": "heart"}
    recorded = emulator.recorded("mcp", "/protected/mcp")
    assert recorded and all(r.headers["authorization"] == "[redacted]" for r in recorded)


async def test_open_endpoint_accepts_and_records_an_authorization_header(emulator):
    async with (
        httpx2.AsyncClient(headers={"Authorization": "Bearer anything"}) as http,
        streamable_http_client(emulator.base_urls["mcp"], http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        assert (await session.call_tool("add", {"a": 0, "b": 0})).structured_content == {"result": 0}

    assert all(r.headers["authorization"] == "[redacted]" for r in emulator.recorded("mcp"))
