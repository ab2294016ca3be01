"""The agent API's request and response shapes (paths and payloads as the original service)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from ninja import Schema
from pydantic import Field, field_validator, model_validator

from agent.tools.mcp import MAX_TOOLS
from providers.schemas import (
    MIME,
    ROUTE_NAME,
    AttemptOut,
    ChainIn,
    EntryIn,
    StreamLimitsIn,
    Strict,
    single_or_fallback,
)

# What every provider accepts as a function name (Gemini is the strictest: a letter or _ first).
TOOL_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


class ToolCallIn(Strict):
    id: str = Field(min_length=1, max_length=200)
    name: str = Field(pattern=TOOL_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)
    signature: str | None = Field(None, max_length=10_000_000,
                                  description="The call's signature as the proxy gave it, sent back unchanged")

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _URLSAFE_B64.match(value) or len(value.rstrip("=")) % 4 == 1:  # 4n+1 characters: not base64
            raise ValueError("must be the signature the proxy gave with the call (URL-safe base64)")
        return value


class MessageIn(Strict):
    role: Literal["user", "model", "assistant", "system", "tool"]
    content: str = Field(max_length=20_000_000)
    mime_type: str | None = Field(None, max_length=100, description="Set for a binary message: content is base64")
    caption: str | None = Field(None, max_length=100_000)
    tool_calls: list[ToolCallIn] = Field(default_factory=list, max_length=128,
                                          description="A model message: the tool calls it made")
    tool_call_id: str | None = Field(None, min_length=1, max_length=200,
                                     description="A tool message: the id of the call it answers")

    @model_validator(mode="after")
    def _tool_fields(self) -> MessageIn:
        if self.tool_calls and self.role not in ("model", "assistant"):
            raise ValueError("tool_calls are only for model messages")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("a tool message needs tool_call_id, and only a tool message has one")
        if self.role == "tool" and self.mime_type is not None:
            raise ValueError("a tool message must be text")
        return self

    @field_validator("mime_type")
    @classmethod
    def _mime(cls, value: str | None) -> str | None:
        if value is not None and not MIME.match(value.lower()):
            raise ValueError("must be a mime type such as image/png")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _binary(self) -> MessageIn:
        if self.mime_type is None:
            if self.caption is not None:
                raise ValueError("caption is only for binary messages (with mime_type)")
            return self
        if self.role == "system":
            raise ValueError("a system message must be text")
        try:
            data = base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content of a binary message must be base64") from None
        if not data:
            raise ValueError("content of a binary message is empty")
        self._data = data
        return self

    @property
    def data(self) -> bytes:
        return self._data


class GenConfigIn(Strict):
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=16)
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    provider_options: dict[str, Any] = Field(default_factory=dict, description="Request fields of the provider's own API that this one does not map, passed as they are; only the keys on each provider's allow-list (README) are accepted")


_Domain = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.*-]+(/[^\s]*)?$")]


class UserLocationIn(Strict):
    city: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=100)
    country: str | None = Field(None, max_length=100, description="ISO code for OpenAI and Anthropic, a name for Groq")
    timezone: str | None = Field(None, max_length=100, description="IANA name, e.g. Europe/Paris")


class WebSearchOptionsIn(Strict):
    allowed_domains: list[_Domain] = Field(default_factory=list, max_length=100)
    blocked_domains: list[_Domain] = Field(default_factory=list, max_length=100)
    user_location: UserLocationIn | None = None


class WebSearchToolIn(Strict):
    kind: Literal["web_search"]
    search_context_size: int | None = Field(
        None, ge=1, le=20, description="How much to search: OpenAI low (1-3) / medium (4-6) / high (7+), "
                                       "Anthropic max_uses; unset: the provider's default")
    kwargs: WebSearchOptionsIn = Field(default_factory=WebSearchOptionsIn)


class McpOptionsIn(Strict):
    headers: dict[str, Annotated[str, Field(max_length=8192)]] = Field(
        default_factory=dict, max_length=32, description="Sent to the MCP server only (e.g. Authorization); never logged")
    allowed_tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=MAX_TOOLS, description="Offer only these tools of the server (its own names)")

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not _HEADER_NAME.match(name) or any(c in header for c in "\r\n\0"):
                raise ValueError(f"invalid header {name[:100]!r}")
        return value


class McpToolIn(Strict):
    kind: Literal["mcp_streamable"]
    url: str = Field(min_length=1, max_length=2000, description="The server's streamable HTTP endpoint")
    prefix: str = Field("tool_", pattern=r"^[A-Za-z0-9_-]{0,32}$", description="Put before each tool name")
    timeout: float = Field(30, gt=0, le=600, description="Seconds for connecting, listing and each tool call")
    kwargs: McpOptionsIn = Field(default_factory=McpOptionsIn)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("must be an http(s) URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: send them in kwargs.headers")
        return value


class FunctionToolIn(Strict):
    kind: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str = Field("", max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}},
                                       description="JSON Schema of the arguments (an object)")

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object" or not isinstance(value.get("properties", {}), dict):
            raise ValueError("must be a JSON Schema of an object: {\"type\": \"object\", \"properties\": {...}}")
        return {"type": "object", "properties": {}, **value}


ToolIn = Annotated[WebSearchToolIn | McpToolIn | FunctionToolIn, Field(discriminator="kind")]


class ChatIn(EntryIn, StreamLimitsIn):
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    tools: list[ToolIn] = Field(default_factory=list, max_length=64)
    gen_config: GenConfigIn = Field(default_factory=GenConfigIn)

    @model_validator(mode="after")
    def _has_a_turn(self) -> ChatIn:
        if all(m.role == "system" for m in self.messages):
            raise ValueError("messages need at least one user or model message")
        return self

    @model_validator(mode="after")
    def _tools_make_sense(self) -> ChatIn:
        if sum(t.kind == "web_search" for t in self.tools) > 1:
            raise ValueError("tools: at most one web_search")
        names = [t.name for t in self.tools if t.kind == "function"]
        clash = next((n for n in names if names.count(n) > 1), None)
        if clash:
            raise ValueError(f"tools: function '{clash}' is declared twice")
        if len(names) > settings.QALBY_AGENT_MAX_TOOLS:
            raise ValueError(f"tools: {len(names)} function tools, more than QALBY_AGENT_MAX_TOOLS "
                             f"({settings.QALBY_AGENT_MAX_TOOLS}) tool definitions")
        servers = len(self.mcp_servers())
        if servers > settings.QALBY_MCP_MAX_SERVERS:
            raise ValueError(f"tools: at most {settings.QALBY_MCP_MAX_SERVERS} MCP servers per request "
                             f"(QALBY_MCP_MAX_SERVERS), not {servers}")
        return self

    def mcp_servers(self) -> set[tuple]:
        """The distinct MCP servers (URL and headers: what is connected once) this request uses."""
        return {(t.url, tuple(sorted(t.kwargs.headers.items()))) for t in self.tools if t.kind == "mcp_streamable"}

    @model_validator(mode="after")
    def _tool_turns_answer_calls(self) -> ChatIn:
        # Each tool message answers a call of an earlier model message (Gemini needs that call's name).
        calls: dict[str, str] = {}
        for index, message in enumerate(self.messages):
            calls.update({c.id: c.name for c in message.tool_calls})
            if message.role == "tool" and message.tool_call_id not in calls:
                raise ValueError(f"messages.{index}: tool_call_id '{message.tool_call_id}' answers no earlier tool call")
        return self

    def call_name(self, call_id: str) -> str:
        return next(c.name for m in self.messages for c in m.tool_calls if c.id == call_id)


class FallbackIn(ChainIn, StreamLimitsIn):
    requests: list[ChatIn] = Field(min_length=1, max_length=10)
    on_stream_failure: Literal["restart", "error"] | None = Field(
        None, description="Streams: when the answer breaks after it began, `restart` sends a `restart` line and the "
                          "next request's whole answer; `error` ends with an `error` line. Default: "
                          "QALBY_STREAM_FAILURE (restart)")
    restart_after_tools: bool = Field(
        False, description="Restart even when the broken attempt already ran MCP tools (they may have side effects)")

    @model_validator(mode="after")
    def _servers_in_all(self) -> FallbackIn:
        # Each request is within the bound; their union is what the proxy resolves and connects to.
        servers = len(set().union(*(chat.mcp_servers() for chat in self.requests)))
        if servers > settings.QALBY_MCP_MAX_SERVERS:
            raise ValueError(f"requests: at most {settings.QALBY_MCP_MAX_SERVERS} MCP servers in a whole chain "
                             f"(QALBY_MCP_MAX_SERVERS; one that several requests use counts once), not {servers}")
        return self


class ChatRouteIn(Strict):
    """A chat over a route: the conversation, sent to each of the route's entries with that entry's settings."""

    route: str = ROUTE_NAME
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    tools: list[ToolIn] = Field(default_factory=list, max_length=64)
    gen_config: GenConfigIn | None = Field(
        None, description="Overrides the route entries' own generation settings, field by field")
    restart_after_tools: bool = Field(
        False, description="Restart even when the broken attempt already ran MCP tools (they may have side effects)")


AgentIn = single_or_fallback(ChatIn, FallbackIn, ChatRouteIn)


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int


class ChatAttemptOut(AttemptOut):
    tools: list[str] = Field(default_factory=list, description="The MCP tools the proxy ran in this attempt")


class ToolCallOut(Schema):
    id: str
    name: str
    arguments: dict[str, Any]
    signature: str | None = Field(
        description="Opaque state of the provider's (Gemini's thought signature, Claude's thinking); "
                    "send it back with the call")


class ToolResultOut(Schema):
    id: str | None = Field(description="The call answered; null for an MCP server that could not be reached")
    name: str
    arguments: dict[str, Any]
    content: str
    is_error: bool


class CitationOut(Schema):
    url: str
    title: str


class RunOut(Schema):
    request_id: str
    output: str
    provider_uid: str
    model: str
    finish_reason: str = Field(description="stop, length, tool_calls, content_filter or max_steps")
    usage: UsageOut
    tool_calls: list[ToolCallOut] = Field(description="Calls of function tools for the client to run and answer")
    tool_results: list[ToolResultOut] = Field(description="The MCP tool calls the proxy ran, with their results")
    citations: list[CitationOut] = Field(description="Sources of a web search")
    attempts: list[ChatAttemptOut]
