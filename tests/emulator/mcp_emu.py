"""MCP server emulator: the official SDK's own streamable-HTTP server with a few deterministic tools.

Two endpoints, both served by ``mcp.server.mcpserver.MCPServer`` (mcp 2.3.0), so every wire detail
(session ids, SSE framing, the 2026-07-28 ``server/discover`` probe and the handshake fallback) is the
SDK's, not ours:

- ``<prefix>/mcp``: open.
- ``<prefix>/protected/mcp``: requires ``Authorization: Bearer mcp-secret`` (the SDK's bearer-auth
  middleware; otherwise 401 ``{"error": "invalid_token", ...}`` with ``WWW-Authenticate``).

The SDK's session managers need a running task group, so ``lifespan(emu)`` starts them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.emulator.core import Emulator

PROVIDER = "mcp"
SERVER_NAME = "qalby-emulator"
SECRET = "mcp-secret"
LOOKUP = {"alpha": "first letter of the Greek alphabet", "pi": "3.14159", "qalby": "heart"}

# Session managers built by app(emu), waiting for lifespan(emu) to run them (keyed by id(emu)).
_PENDING: dict[int, list[StreamableHTTPSessionManager]] = {}


def base_url(prefix: str) -> str:
    return f"{prefix}/mcp"


def protected_url(url: str) -> str:
    """The endpoint that requires ``Authorization: Bearer mcp-secret``, from ``base_url()``'s answer."""
    return url.removesuffix("/mcp") + "/protected/mcp"


class _SecretVerifier:
    async def verify_token(self, token: str) -> AccessToken | None:
        if token != SECRET:
            return None
        return AccessToken(token=token, client_id="emulator-client", scopes=[])


def build_server(name: str = SERVER_NAME, *, protected: bool = False) -> MCPServer:
    auth: dict = {}
    if protected:
        # Resource-server mode with no metadata URL: the SDK then only checks the bearer token.
        auth = {
            "auth": AuthSettings(issuer_url="http://127.0.0.1", resource_server_url=None),
            "token_verifier": _SecretVerifier(),
        }
    server = MCPServer(name, version="1.0.0", log_level="WARNING", **auth)

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def lookup(key: str) -> str:
        """Look a key up in a small fixed table."""
        if key not in LOOKUP:
            raise ToolError(f"unknown key {key!r}")
        return LOOKUP[key]

    @server.tool()
    def fail(message: str) -> str:
        """Always fail with the given message."""
        raise ToolError(message)

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep for the given number of seconds, then answer."""
        await anyio.sleep(seconds)
        return f"slept {seconds:g}s"

    return server


def app(emu: Emulator) -> Starlette:
    # Host/Origin checks off: the emulator may be reached under any name (containers, --host).
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    mounts = []
    for path, server in (("/protected", build_server(protected=True)), ("", build_server())):
        mounts.append(Mount(path, app=server.streamable_http_app(transport_security=security)))
        _PENDING.setdefault(id(emu), []).append(server.session_manager)
    return Starlette(routes=mounts)


@contextlib.asynccontextmanager
async def lifespan(emu: Emulator) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for manager in _PENDING.pop(id(emu), []):
            await stack.enter_async_context(manager.run())
        yield
