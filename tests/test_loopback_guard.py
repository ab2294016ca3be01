import socket

import pytest

from tests.loopback_guard import NonLoopbackConnection


def test_connections_outside_loopback_are_refused():
    with pytest.raises(NonLoopbackConnection):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)


def test_name_resolution_to_public_addresses_is_refused():
    with pytest.raises((NonLoopbackConnection, OSError)):
        socket.getaddrinfo("example.com", 443)


def test_loopback_is_allowed(emulator):
    with socket.create_connection(("127.0.0.1", int(emulator.root.rsplit(":", 1)[1])), timeout=1):
        pass
