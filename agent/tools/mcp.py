"""MCP servers over streamable HTTP, through the official ``mcp`` SDK client, for one API request.

A :class:`Toolbox` connects each distinct server (URL + headers) of a request once, lists its
tools, and is shared by every attempt of a fallback chain; it is closed when the answer (or the
stream) ends. A server that cannot be reached, or does not answer within its ``timeout``, is not
an error of the request: its tools are not offered and the failure is reported as a tool result.
A tool that fails, times out or whose server drops is a tool result with ``is_error`` that goes
back to the model, which decides what to do.

Headers (``kwargs.headers``, e.g. an Authorization for the server) are sent to that server only
and appear in no message: errors name the server by scheme, host, port and path.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT

from agent.tools import guard
from providers.adapters.chat import FunctionTool, ToolCall, ToolResult
from providers.exceptions import InvalidInput

# Tools read from one server (and so the most kwargs.allowed_tools may name); a model gets confused
# long before this anyway, and QALBY_AGENT_MAX_TOOLS bounds what one request offers.
MAX_TOOLS = 128
MAX_PAGES = 10
MAX_RESULT_CHARS = 100_000  # a tool result goes back into the model's context
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpSpec:
    """One ``mcp_streamable`` tool entry of a chat request."""

    url: str
    prefix: str = "tool_"
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    allowed_tools: tuple[str, ...] | None = None


def where(url: str) -> str:
    """The server as messages name it: no user info, query or fragment (they may hold secrets)."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _reason(error: BaseException) -> str:
    """Why a server failed, from the SDK's (possibly grouped) exception, without its text when it may hold input."""
    leaves = _leaves(error)
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return f"MCP error {leaf.code}: {leaf.message}"
        if isinstance(leaf, httpx2.ConnectError) and str(leaf).startswith("refused:"):
            return str(leaf)
        if isinstance(leaf, httpx2.HTTPStatusError):
            return f"HTTP {leaf.response.status_code}"
    return f"connection failed ({type(leaves[0]).__name__})"


def _text(result: Any) -> str:
    parts = []
    for block in result.content or ():
        if block.type == "text":
            parts.append(block.text)
        elif block.type == "resource" and getattr(block.resource, "text", None) is not None:
            parts.append(block.resource.text)
        else:
            parts.append(f"[{block.type} content not shown]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f" [truncated: {len(text)} characters in all]"
    return text


class Connection:
    """One MCP server for the length of one API request.

    The SDK client lives in anyio task groups, which must be entered and left by the same task;
    attempts run in other tasks (races, the streaming response), so a task of its own holds the
    client open until :meth:`close`, and attempts call it from wherever they run.
    """

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = headers
        self.tools: list[Any] = []
        self.error: str | None = None
        self._client: Client | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        """Connect and list the tools; on failure ``error`` says why (never raises, but for cancellation)."""
        ready = asyncio.get_running_loop().create_future()
        # Read even when nobody waits any more (open gave up first), so asyncio does not log it as lost.
        ready.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._task = asyncio.create_task(self._hold(ready))
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            self.error = f"no answer within {self.timeout:g}s"
        except Exception as error:
            self.error = _reason(error)
        if self.error:
            await self.close()

    async def _hold(self, ready: asyncio.Future) -> None:
        try:
            async with (
                # HTTP gives up a second after our own deadlines, so theirs are the ones that speak.
                httpx2.AsyncClient(headers=self._headers, transport=guard.transport(),
                                   timeout=httpx2.Timeout(self.timeout + 1)) as http,
                Client(streamable_http_client(self.url, http_client=http), read_timeout_seconds=self.timeout) as client,
            ):
                self.tools = await _list(client)
                self._client = client
                ready.set_result(None)
                await self._closing.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except Exception as error:  # the connection broke: calls made after this fail as tool errors
            self._client = None
            if not ready.done():
                ready.set_exception(error)

    async def call(self, name: str, arguments: dict[str, Any], seconds: float) -> tuple[str, bool]:
        """(content, is_error) of one tool call, given ``seconds`` to answer."""
        client = self._client
        if client is None:
            return f"MCP server {where(self.url)} is not connected", True
        try:
            # The SDK's own read timeout fires first; this one also covers a server that went silent.
            async with asyncio.timeout(seconds + 1):
                result = await client.call_tool(name, arguments, read_timeout_seconds=seconds)
        except TimeoutError:
            return f"tool {name} did not answer within {seconds:g}s", True
        except MCPError as error:
            if error.code == REQUEST_TIMEOUT:
                return f"tool {name} did not answer within {seconds:g}s", True
            return f"MCP error {error.code}: {error.message}", True
        except Exception as error:
            return f"MCP server {where(self.url)} failed: {_reason(error)}", True
        return _text(result), bool(result.is_error)

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is None or task.done():
            return
        if self._client is None:
            task.cancel()  # still connecting: there is no session to end politely
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _list(client: Client) -> list[Any]:
    tools, cursor = [], None
    for _ in range(MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor or len(tools) >= MAX_TOOLS:
            break
    return tools[:MAX_TOOLS]


@dataclass(frozen=True)
class _Binding:
    connection: Connection
    name: str  # the server's own name for the tool
    timeout: float


@dataclass
class ItemTools:
    """The MCP tools one chat request offers its model, and how to run them."""

    offered: tuple[FunctionTool, ...] = ()
    bindings: dict[str, _Binding] = field(default_factory=dict)
    errors: tuple[ToolResult, ...] = ()  # servers that could not be reached

    def owns(self, name: str) -> bool:
        return name in self.bindings

    async def run(self, call: ToolCall) -> ToolResult:
        binding = self.bindings[call.name]
        content, is_error = await binding.connection.call(binding.name, call.arguments, binding.timeout)
        return ToolResult(call.id, call.name, content, is_error)


class Toolbox:
    """Every MCP server of one API request, connected once and shared by the attempts of its chain."""

    def __init__(self) -> None:
        self._connections: dict[tuple, Connection] = {}

    def _connection(self, spec: McpSpec) -> Connection:
        key = (spec.url, tuple(sorted(spec.headers.items())))
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = Connection(spec.url, spec.headers, spec.timeout)
        connection.timeout = max(connection.timeout, spec.timeout)
        return connection

    async def open(self, specs: list[McpSpec]) -> None:
        for spec in specs:
            self._connection(spec)
        await asyncio.gather(*(c.open() for c in self._connections.values()))

    def tools_for(self, specs: list[McpSpec], taken: set[str]) -> ItemTools:
        """The tools of ``specs`` as the model sees them (prefixed); a name clash is the client's error."""
        tools = ItemTools()
        offered, errors = [], []
        for spec in specs:
            connection = self._connection(spec)
            if connection.error:
                errors.append(ToolResult(None, f"{spec.prefix}*",
                                         f"MCP server {where(spec.url)} is unreachable ({connection.error}); "
                                         "its tools are not available", True))
                continue
            for tool in connection.tools:
                if spec.allowed_tools is not None and tool.name not in spec.allowed_tools:
                    continue
                name = _NOT_A_NAME.sub("_", spec.prefix + tool.name)[:64]
                if name in taken:
                    raise InvalidInput(
                        f"tool name clash: '{name}' (from MCP server {where(spec.url)}) is offered twice; "
                        "give the server another prefix"
                    )
                taken.add(name)
                schema = tool.input_schema or {"type": "object", "properties": {}}
                offered.append(FunctionTool(name, tool.description or "", schema))
                tools.bindings[name] = _Binding(connection, tool.name, spec.timeout)
        tools.offered, tools.errors = tuple(offered), tuple(errors)
        return tools

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections.values()), return_exceptions=True)
