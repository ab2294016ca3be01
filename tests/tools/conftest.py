import ipaddress
import socket
import threading
import time

import pytest

from agent.tools import guard


@pytest.fixture
def loopback_mcp(settings):
    """Allow MCP servers on 127.0.0.1 (the emulator's); every other private address stays refused."""
    settings.QALBY_MCP_ALLOWED_HOSTS = ["127.0.0.1"]


class FakeDns:
    """The MCP guard's name resolution, offline: ``names`` maps a name to its addresses, ``slow`` to the
    seconds its answer takes; any other name does not exist. ``lookups`` records (name, start, end)."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.slow: dict[str, float] = {}
        self.lookups: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def lookup(self, host: str, port: int) -> list:
        started = time.monotonic()
        try:
            time.sleep(self.slow.get(host, 0))  # a slow resolver blocks its thread, as getaddrinfo does
            if host not in self.names:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [ipaddress.ip_address(address) for address in self.names[host]]
        finally:
            with self._lock:
                self.lookups.append((host, started, time.monotonic()))


@pytest.fixture
def fake_dns(monkeypatch):
    dns = FakeDns()
    monkeypatch.setattr(guard, "_lookup", dns.lookup)
    return dns
