"""Where MCP connections may go; the transport checks the address it dials, not only the URL."""

import ipaddress

import httpx2
import pytest

from agent.tools import guard


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.0.1", False), ("127.0.0.1", False), ("0.0.0.0", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("224.0.0.1", False), ("::1", False), ("fe80::1", False),
    ("fd00::1", False), ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True),
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
