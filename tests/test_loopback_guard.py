import socket

import pytest

from tests import loopback_guard
from tests.loopback_guard import NonLoopbackConnection


def test_connections_outside_loopback_are_refused():
    with pytest.raises(NonLoopbackConnection):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)


def test_name_resolution_to_public_addresses_is_refused(monkeypatch):
    # Offline, real DNS fails before the guard sees an answer: give the guard one, as a resolver would.
    answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    monkeypatch.setattr(loopback_guard, "_original_getaddrinfo", lambda *args, **kwargs: answer)
    with pytest.raises(NonLoopbackConnection, match="not '93.184.215.14'"):
        socket.getaddrinfo("example.com", 443)


def test_a_public_address_literal_is_refused_at_resolution():
    # A literal needs no DNS: the real resolver answers it offline, and the guard refuses the answer.
    with pytest.raises(NonLoopbackConnection, match="not '192.0.2.1'"):
        socket.getaddrinfo("192.0.2.1", 443)


def test_name_resolution_to_loopback_is_allowed():
    assert socket.getaddrinfo("127.0.0.1", 443)


def test_loopback_is_allowed(emulator):
    with socket.create_connection(("127.0.0.1", int(emulator.root.rsplit(":", 1)[1])), timeout=1):
        pass
