"""Where MCP connections may go. MCP URLs come from clients, so the proxy must not become a way in.

A host is reachable when the operator lists it in QALBY_MCP_ALLOWED_HOSTS (a name, an address or
a network such as ``10.1.0.0/16``), or when every address its name resolves to is public: private,
loopback, link-local, shared, reserved and multicast addresses are refused.

The check runs twice: once on the URL before anything else (a clear 400), and again inside the
HTTP transport at every connection, on the address actually dialled, so a DNS answer that changes
between the two (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore2
import httpx2
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The host or address is not one the proxy may connect to."""


def _listed() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names, networks = set(), []
    for entry in settings.QALBY_MCP_ALLOWED_HOSTS:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip().lower().rstrip("."))
    return names, networks


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def allowed_address(address: Address) -> bool:
    _names, networks = _listed()
    return _public(address) or any(address in network for network in networks)


def host_listed(host: str) -> bool:
    return host.lower().rstrip(".") in _listed()[0]


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int) -> list[Address]:
    if _literal(host):
        return [ipaddress.ip_address(host)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


async def allowed_addresses(host: str, port: int) -> list[Address]:
    """The addresses of ``host`` the proxy may dial; Refused when there are none."""
    addresses = await resolve(host, port)
    if host_listed(host):
        return addresses
    refused = [a for a in addresses if not allowed_address(a)]
    if refused:
        # One private answer is enough to refuse: which one a connection would use is not ours to pick.
        said = f"{host} is" if addresses == [refused[0]] and _literal(host) else f"{host} resolves to {refused[0]},"
        raise Refused(f"{said} a non-public address")
    return addresses


async def check_url(url: str) -> str | None:
    """Why ``url`` may not be used, or None. A name that does not resolve is left to fail when connecting."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        await allowed_addresses(host, parts.port or (443 if parts.scheme == "https" else 80))
    except Refused as refused:
        return (f"{refused}; MCP servers must be on public addresses, or their host listed in "
                "QALBY_MCP_ALLOWED_HOSTS")
    except OSError:
        return None
    return None


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves names itself and dials only allowed addresses."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    # The signatures are httpcore2's network backend interface.
    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ASYNC109
        try:
            addresses = await allowed_addresses(host, port)
        except Refused as refused:
            raise httpcore2.ConnectError(f"refused: {refused}") from None
        except OSError as error:
            raise httpcore2.ConnectError(f"cannot resolve {host}") from error
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore2.ConnectError as error:
                last = error
        raise last or httpcore2.ConnectError(f"no address for {host}")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ASYNC109
        raise httpcore2.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def transport() -> httpx2.AsyncHTTPTransport:
    """An HTTP transport that connects only where this module allows; environment proxies are ignored."""
    guarded = httpx2.AsyncHTTPTransport(trust_env=False)
    # httpx2 takes no network backend, but the connection pool it builds does: give it ours.
    guarded._pool._network_backend = _GuardedBackend()
    return guarded
