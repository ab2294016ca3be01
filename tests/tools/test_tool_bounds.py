"""Bounds on what one request may make the proxy do with tools: how many MCP servers, how many tool
definitions, how long their names may take to resolve. Past a bound: a 400 naming it, before any
provider is called."""

import time
from urllib.parse import urlsplit

import pytest

from tests.agent.helpers import chain, stream
from tests.emulator.mcp_emu import SECRET
from tests.tools.helpers import ask, calls, mcp

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/agent/run", "/agent/run_stream"]
FN = {"kind": "function", "name": "clock"}


def named(emulator, host: str, **fields) -> dict:
    """The emulator's MCP server under another host name (the fake DNS says where it is)."""
    parts = urlsplit(emulator.base_urls["mcp"])
    return {"kind": "mcp_streamable", "url": f"http://{host}:{parts.port}{parts.path}", **fields}


@pytest.mark.parametrize("path", PATHS)
async def test_the_reported_fan_out_is_refused_before_any_lookup(user, configs, emulator, fake_dns, path):
    # Issue #19: 10 chained requests x 64 MCP servers each were accepted and resolved one after another.
    servers = [{"kind": "mcp_streamable", "url": f"https://mcp{n}.example.com/mcp"} for n in range(64)]
    body = chain(*[ask("openai", "hi", *servers) for _ in range(10)])
    status, answer, _ = await stream(user, body, path)
    assert status == 400 and "QALBY_MCP_MAX_SERVERS" in answer["detail"]
    assert fake_dns.lookups == [] and emulator.recorded() == []  # refused before any lookup or call


@pytest.mark.parametrize("path", PATHS)
async def test_mcp_servers_of_one_request_are_capped(user, configs, emulator, loopback_mcp, settings, path):
    settings.QALBY_MCP_MAX_SERVERS = 2
    three = [mcp(emulator, prefix="a_"), mcp(emulator, protected=True, prefix="b_"),
             mcp(emulator, protected=True, prefix="c_", kwargs={"headers": {"Authorization": f"Bearer {SECRET}"}})]
    status, answer, _ = await stream(user, ask("openai", "hi", *three), path)
    assert status == 400, answer
    assert "at most 2 MCP servers" in answer["detail"] and "QALBY_MCP_MAX_SERVERS" in answer["detail"]
    assert emulator.recorded() == []
    # The same server twice (URL and headers) is one connection, so it counts once.
    status, _answer, _ = await stream(user, ask("openai", "hi", *three[:2], mcp(emulator, prefix="d_")), path)
    assert status == 200


async def test_a_chain_counts_its_servers_together(user, configs, emulator, loopback_mcp, settings):
    settings.QALBY_MCP_MAX_SERVERS = 2
    a, b = mcp(emulator, prefix="a_"), mcp(emulator, protected=True, prefix="b_")
    c = mcp(emulator, protected=True, prefix="c_", kwargs={"headers": {"Authorization": f"Bearer {SECRET}"}})
    response = await user.post("/agent/run", json=chain(ask("openai", "hi", a, b), ask("groq", "hi", b, c)))
    assert response.status_code == 400
    assert "in a whole chain" in response.json()["detail"] and "QALBY_MCP_MAX_SERVERS" in response.json()["detail"]
    assert emulator.recorded() == []
    # Servers that several requests share are connected once: they count once.
    response = await user.post("/agent/run", json=chain(ask("openai", "hi", a, b), ask("groq", "hi", b, a)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", PATHS)
async def test_tool_definitions_are_capped_mcp_tools_included(user, configs, emulator, loopback_mcp, settings, path):
    settings.QALBY_AGENT_MAX_TOOLS = 5  # the emulator's server has 4 tools; with 2 functions, 6
    functions = [FN, {**FN, "name": "weather"}]
    status, answer, _ = await stream(user, ask("openai", "hi", mcp(emulator), *functions), path)
    assert status == 400, answer
    assert "QALBY_AGENT_MAX_TOOLS" in answer["detail"] and "6 tool definitions" in answer["detail"]
    assert emulator.recorded("openai") == []
    narrowed = mcp(emulator, kwargs={"allowed_tools": ["add", "lookup"]})
    status, _answer, _ = await stream(user, ask("openai", "hi", narrowed, *functions), path)
    assert status == 200


async def test_function_tools_alone_are_capped(user, configs, emulator, settings):
    settings.QALBY_AGENT_MAX_TOOLS = 1
    response = await user.post("/agent/run", json=chain(ask("openai", "hi", FN, {**FN, "name": "weather"})))
    assert response.status_code == 400
    assert "QALBY_AGENT_MAX_TOOLS" in response.json()["detail"] and "requests.0" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_mcp_host_names_are_resolved_together(user, configs, emulator, loopback_mcp, fake_dns):
    hosts = [f"mcp{n}.test" for n in range(4)]
    for host in hosts:
        fake_dns.names[host], fake_dns.slow[host] = ["127.0.0.1"], 0.3
    servers = [named(emulator, host, prefix=f"s{n}_") for n, host in enumerate(hosts)]
    response = await user.post("/agent/run", json=ask("anthropic", calls(("s3_add", {"a": 1, "b": 1})), *servers))
    assert response.status_code == 200, response.text
    assert response.json()["tool_results"][0]["content"] == "2"
    # The guard's lookups (the first four) all ran at once: none ended before the last one began.
    first = sorted(fake_dns.lookups, key=lambda lookup: lookup[1])[:4]
    assert {host for host, _, _ in first} == set(hosts)
    assert max(start for _, start, _ in first) < min(end for _, _, end in first)


@pytest.mark.parametrize("path", PATHS)
async def test_a_name_that_does_not_resolve_in_time_is_a_400(user, configs, emulator, loopback_mcp, fake_dns,
                                                            settings, path):
    settings.QALBY_MCP_RESOLVE_TIMEOUT = 0.2
    fake_dns.names.update({"slow.test": ["127.0.0.1"], "quick.test": ["127.0.0.1"]})
    fake_dns.slow["slow.test"] = 5  # far past the 0.2 s allowed, so the bound below has room for a loaded machine
    body = ask("openai", "hi", named(emulator, "quick.test", prefix="a_"), named(emulator, "slow.test", prefix="b_"))
    started = time.monotonic()
    status, answer, _ = await stream(user, body, path)
    assert status == 400, answer
    assert time.monotonic() - started < 3  # given up at 0.2 s, not after the 5 s lookup
    assert "slow.test did not resolve within 0.2s" in answer["detail"]
    assert "QALBY_MCP_RESOLVE_TIMEOUT" in answer["detail"]
    assert emulator.recorded() == []


@pytest.mark.parametrize("path", PATHS)
async def test_a_name_that_does_not_resolve_is_a_400(user, configs, emulator, loopback_mcp, fake_dns, path):
    status, answer, _ = await stream(user, ask("openai", "hi", named(emulator, "nowhere.test")), path)
    assert status == 400, answer
    assert "nowhere.test does not resolve" in answer["detail"]
    assert emulator.recorded() == []
