"""Where MCP connections may go. MCP URLs come from clients, so the proxy must not become a way in.

A host is reachable when the operator lists it in QALBY_MCP_ALLOWED_HOSTS (a name, an address or
a network such as ``10.1.0.0/16``), or when every address its name resolves to is public: private,
loopback, link-local, shared, reserved and multicast addresses are refused, and so are IPv6
addresses that stand for such an IPv4 address (IPv4-mapped, NAT64, 6to4).

The check runs twice: once on the URL before anything else (a clear 400), and again inside the
HTTP transport at every connection, on the address actually dialled, so a DNS answer that changes
between the two (DNS rebinding) cannot slip through. A name that does not resolve within
QALBY_MCP_RESOLVE_TIMEOUT is refused too. Refusals name the host as given, never the addresses it
resolved to: those would map the internal network for the client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpcore2
import httpx2
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The host or address is not one the proxy may connect to."""


class Unresolved(Refused):
    """The host name did not resolve, or not in time."""


# getaddrinfo blocks a thread until the system resolver gives up, whatever deadline we set on the
# await; in a pool of their own, slow names a client chose cannot starve the lookups of provider calls.
_RESOLVER = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mcp-dns")

# RFC 6052 NAT64: the last 32 bits are the IPv4 address the packets go to (DNS64 on IPv6-only networks
# gives every IPv4-only server such an address, so it is judged by that IPv4 address, not refused).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never public, though some Python 3.11 releases call them global: IPv4-compatible addresses
# (deprecated by RFC 4291; a stack may still route ::a.b.c.d to a.b.c.d) and local-use NAT64 (RFC 8215).
_NEVER_PUBLIC = (ipaddress.ip_network("::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _listed() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names, networks = set(), []
    for entry in settings.QALBY_MCP_ALLOWED_HOSTS:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip().lower().rstrip("."))
    return names, networks


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC):
            return False
        # Where packets to an address that embeds an IPv4 address (mapped, 6to4, NAT64) really go.
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF) if address in _NAT64 else None
        address = address.ipv4_mapped or address.sixtofour or nat64 or address
    return address.is_global and not (address.is_multicast or address.is_reserved)


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


def _lookup(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses of ``host``; Unresolved when it has none, or none within QALBY_MCP_RESOLVE_TIMEOUT."""
    if _literal(host):
        return [ipaddress.ip_address(host)]
    seconds = settings.QALBY_MCP_RESOLVE_TIMEOUT
    try:
        async with asyncio.timeout(seconds):
            addresses = await asyncio.get_running_loop().run_in_executor(_RESOLVER, _lookup, host, port)
    except TimeoutError:
        raise Unresolved(f"{host} did not resolve within {seconds:g}s (QALBY_MCP_RESOLVE_TIMEOUT)") from None
    except (OSError, ValueError):  # ValueError: a name IDNA cannot encode (a label over 63 characters...)
        raise Unresolved(f"{host} does not resolve") from None
    if not addresses:  # "all of none are public" would let it through
        raise Unresolved(f"{host} does not resolve")
    return addresses


async def allowed_addresses(host: str, port: int) -> list[Address]:
    """The addresses of ``host`` the proxy may dial; Refused when there are none."""
    addresses = await resolve(host, port)
    if host_listed(host):
        return addresses
    # One private answer is enough to refuse: which one a connection would use is not ours to pick.
    if not all(allowed_address(a) for a in addresses):
        raise Refused(f"{host} {'is' if _literal(host) else 'resolves to'} a non-public address")
    return addresses


async def check_url(url: str) -> str | None:
    """Why ``url`` may not be used, or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        await allowed_addresses(host, parts.port or (443 if parts.scheme == "https" else 80))
    except Unresolved as unresolved:
        return str(unresolved)
    except Refused as refused:
        return (f"{refused}; MCP servers must be on public addresses, or their host listed in "
                "QALBY_MCP_ALLOWED_HOSTS")
    return None


async def check_urls(urls: list[str]) -> dict[str, str]:
    """Why each refused URL of ``urls`` may not be used; their names are resolved all at once."""
    reasons = await asyncio.gather(*(check_url(url) for url in urls))
    return {url: reason for url, reason in zip(urls, reasons, strict=True) if reason}


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves names itself and dials only allowed addresses."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    # The signatures are httpcore2's network backend interface.
    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ASYNC109
        try:
            addresses = await allowed_addresses(host, port)
        except Unresolved as unresolved:
            raise httpcore2.ConnectError(str(unresolved)) from None
        except Refused as refused:
            raise httpcore2.ConnectError(f"refused: {refused}") from None
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
