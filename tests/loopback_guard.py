"""Refuse every outbound connection that is not to loopback, for the whole test session."""

import ipaddress
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_getaddrinfo = socket.getaddrinfo


class NonLoopbackConnection(RuntimeError):
    pass


def _check(address) -> None:
    if not isinstance(address, tuple):  # unix sockets
        return
    host = address[0]
    try:
        if ipaddress.ip_address(host.split("%")[0]).is_loopback:
            return
    except ValueError:
        pass
    raise NonLoopbackConnection(f"tests may only connect to loopback, not {host!r}")


def _connect(self, address):
    _check(address)
    return _original_connect(self, address)


def _connect_ex(self, address):
    _check(address)
    return _original_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    results = _original_getaddrinfo(host, *args, **kwargs)
    for *_, sockaddr in results:
        if host is not None and not isinstance(sockaddr, tuple | list):
            continue
        if host is not None:
            _check(sockaddr)
    return results


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.getaddrinfo = _getaddrinfo
