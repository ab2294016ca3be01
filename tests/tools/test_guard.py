"""Where MCP connections may go; the transport checks the address it dials, not only the URL."""

import asyncio
import ipaddress

import httpx2
import pytest

from agent.tools import guard


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.0.1", False), ("127.0.0.1", False), ("0.0.0.0", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("224.0.0.1", False), ("::1", False), ("fe80::1", False),
    ("fd00::1", False), ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True),
    # IPv6 that stands for an IPv4 address: NAT64 and 6to4 are judged by it, IPv4-compatible is refused.
    ("64:ff9b::7f00:1", False), ("64:ff9b::a00:5", False), ("64:ff9b::808:808", True),
    ("2002:7f00:1::1", False), ("2002:a9fe:a9fe::1", False), ("2002:808:808::1", True),
    ("::7f00:1", False), ("::a00:5", False), ("::808:808", False), ("64:ff9b:1::808:808", False),
])
def test_only_public_addresses_are_allowed_by_default(settings, address, public):
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    assert guard.allowed_address(ipaddress.ip_address(address)) is public


def test_listed_addresses_and_networks_are_allowed(settings):
    settings.QALBY_MCP_ALLOWED_HOSTS = ["10.0.0.0/8", "192.168.1.5", "mcp.internal"]
    assert guard.allowed_address(ipaddress.ip_address("10.200.0.1"))
    assert guard.allowed_address(ipaddress.ip_address("192.168.1.5"))
    assert not guard.allowed_address(ipaddress.ip_address("192.168.1.6"))
    assert guard.host_listed("MCP.internal.") and not guard.host_listed("other.internal")


async def test_a_name_is_refused_if_any_of_its_addresses_is_private(settings):
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    with pytest.raises(guard.Refused, match="non-public"):
        await guard.allowed_addresses("localhost", 80)
    settings.QALBY_MCP_ALLOWED_HOSTS = ["localhost"]  # a listed name is trusted wherever it resolves
    assert ipaddress.ip_address("127.0.0.1") in await guard.allowed_addresses("localhost", 80)


async def test_the_transport_checks_each_connection_it_opens(settings, emulator):
    # What DNS rebinding would look like: the URL passed an earlier check, the address dialled does not.
    url = emulator.base_urls["openai"] + "/models"
    settings.QALBY_MCP_ALLOWED_HOSTS = ["127.0.0.1"]
    async with httpx2.AsyncClient(transport=guard.transport()) as http:
        assert (await http.get(url)).status_code == 401  # reached the emulator
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    async with httpx2.AsyncClient(transport=guard.transport()) as http:
        with pytest.raises(httpx2.ConnectError, match="refused: 127.0.0.1 is a non-public address"):
            await http.get(url)
    assert len(emulator.recorded("openai")) == 1


async def test_a_refusal_names_the_host_given_never_what_it_resolved_to(settings, fake_dns):
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    fake_dns.names.update({"internal.test": ["10.0.0.5"], "mixed.test": ["8.8.8.8", "fd12::5"]})
    for host, address in (("internal.test", "10.0.0.5"), ("mixed.test", "fd12::5")):
        refused = await guard.check_url(f"https://{host}/mcp")
        assert host in refused and address not in refused
    assert await guard.check_url("https://[::7f00:1]/mcp") == (
        "::7f00:1 is a non-public address; MCP servers must be on public addresses, "
        "or their host listed in QALBY_MCP_ALLOWED_HOSTS")


async def test_the_dial_time_refusal_hides_the_address_too(settings, emulator, fake_dns):
    # DNS rebinding: the name passed the first check; at connection time it points inside.
    fake_dns.names["rebind.test"] = ["127.0.0.1"]
    port = emulator.base_urls["mcp"].split(":")[2].split("/")[0]
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    async with httpx2.AsyncClient(transport=guard.transport()) as http:
        with pytest.raises(httpx2.ConnectError) as refused:
            await http.get(f"http://rebind.test:{port}/mcp/mcp")
    assert str(refused.value) == "refused: rebind.test resolves to a non-public address"
    assert emulator.recorded() == []


@pytest.fixture
async def redirector_to(fake_dns, settings):
    """``await redirector_to(target)``: the URL of an allowed server (redirector.test) that answers 307 to target."""
    servers = []

    async def start(target: str) -> str:
        async def answer(reader, writer):
            await reader.read(65536)
            writer.write(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        servers.append(await asyncio.start_server(answer, "127.0.0.1", 0))
        fake_dns.names["redirector.test"] = ["127.0.0.1"]
        settings.QALBY_MCP_ALLOWED_HOSTS = ["redirector.test"]
        return f"http://redirector.test:{servers[-1].sockets[0].getsockname()[1]}/mcp"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def redirector(emulator, redirector_to):
    """An allowed MCP server (redirector.test, on loopback) that answers every request with a 307 to
    the emulator's MCP server at 127.0.0.1, an address the guard refuses."""
    return await redirector_to(emulator.base_urls["mcp"])


async def test_a_redirect_to_a_refused_address_is_not_dialled_even_when_followed(redirector, emulator):
    # The MCP SDK follows no redirect off its origin; were one followed, the dial-time check refuses it.
    async with httpx2.AsyncClient(transport=guard.transport(), follow_redirects=True) as http:
        with pytest.raises(httpx2.ConnectError, match="refused: 127.0.0.1 is a non-public address"):
            await http.post(redirector, json={})
    assert emulator.recorded("mcp") == []


@pytest.mark.django_db(transaction=True)
async def test_an_mcp_server_that_redirects_to_a_private_address_is_unreachable(user, configs, redirector, emulator):
    body = {"provider_uid": "openai", "model": "m1", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"kind": "mcp_streamable", "url": redirector, "timeout": 2}]}
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    (failure,) = response.json()["tool_results"]
    assert failure["is_error"] and "unreachable" in failure["content"]
    assert emulator.recorded("mcp") == []


async def test_a_redirect_to_a_name_that_resolves_inside_is_refused_at_dial_time(redirector_to, fake_dns, emulator):
    # The allowed server sends the client to another name; that name resolves to a refused address.
    fake_dns.names["inside.test"] = ["127.0.0.1"]
    port = emulator.base_urls["mcp"].split(":")[2].split("/")[0]
    url = await redirector_to(f"http://inside.test:{port}/mcp/mcp")
    async with httpx2.AsyncClient(transport=guard.transport(), follow_redirects=True) as http:
        with pytest.raises(httpx2.ConnectError) as refused:
            await http.post(url, json={})
    assert str(refused.value) == "refused: inside.test resolves to a non-public address"
    assert emulator.recorded() == []


async def test_unix_sockets_are_never_dialled(settings, tmp_path):
    # Nothing in a client's URL picks a unix socket; were the transport ever given one, it refuses it.
    dialled = []

    async def answer(reader, writer):
        dialled.append(True)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    path = str(tmp_path / "mcp.sock")
    server = await asyncio.start_unix_server(answer, path)
    settings.QALBY_MCP_ALLOWED_HOSTS = ["localhost", "127.0.0.0/8"]  # even a listed host does not open the socket
    guarded = guard.transport()
    guarded._pool._uds = path
    try:
        async with httpx2.AsyncClient(transport=guarded) as http:
            with pytest.raises(httpx2.ConnectError, match="^unix sockets are not allowed$"):
                await http.get("http://localhost/mcp")
    finally:
        server.close()
    assert dialled == []


async def test_a_name_that_does_not_resolve_is_refused(settings, fake_dns):
    settings.QALBY_MCP_ALLOWED_HOSTS = ["listed.test"]  # listing a name does not spare it its resolution
    assert await guard.check_url("https://nowhere.test/mcp") == "nowhere.test does not resolve"
    assert await guard.check_url("https://listed.test/mcp") == "listed.test does not resolve"
    with pytest.raises(guard.Unresolved, match="^nowhere.test does not resolve$"):
        await guard.allowed_addresses("nowhere.test", 443)


async def test_a_name_with_an_empty_answer_is_refused(settings, monkeypatch):
    # "Every address is public" holds for no address at all: an empty answer must not pass.
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    monkeypatch.setattr(guard, "_lookup", lambda host, port: [])
    assert await guard.check_url("https://empty.test/mcp") == "empty.test does not resolve"


async def test_a_name_the_real_resolver_rejects_is_refused(settings):
    # No network needed: the system resolver cannot even encode a label over 63 characters.
    settings.QALBY_MCP_ALLOWED_HOSTS = []
    host = "a" * 64 + ".test"
    assert await guard.check_url(f"https://{host}/mcp") == f"{host} does not resolve"


async def test_a_name_that_stops_resolving_is_not_dialled(settings, emulator, fake_dns):
    # It passed the URL check, then its name went away: the transport dials nothing.
    port = emulator.base_urls["mcp"].split(":")[2].split("/")[0]
    settings.QALBY_MCP_ALLOWED_HOSTS = ["gone.test"]
    async with httpx2.AsyncClient(transport=guard.transport()) as http:
        with pytest.raises(httpx2.ConnectError, match="^gone.test does not resolve$"):
            await http.get(f"http://gone.test:{port}/mcp/mcp")
    assert emulator.recorded() == []
