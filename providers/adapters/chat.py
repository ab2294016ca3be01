"""Chat: request, result and stream chunk types, the ``Chat`` capability protocol, and the helpers
every chat adapter shares (tool call arguments and signatures, citations, accepted attachments).

An adapter that implements ``Chat`` must:
- list in ``accepted_mime_types`` the attachment types its vendor takes (the agent loop refuses
  others before any call, :func:`require_mime_types`), and refuse a web search setting it cannot
  honour before any call (``Unsupported``);
- send every tool call whole, with its arguments a JSON object (:func:`tool_arguments`), and any
  state the vendor wants back with it in its signature (:func:`sign`);
- end every stream with a :class:`Finish` chunk, or raise: a stream that stops without the
  provider's finish signal raises ``Unavailable``, never ends quietly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from providers import exceptions as exc

Role = Literal["system", "user", "model", "tool"]


@dataclass(frozen=True)
class Attachment:
    mime_type: str
    data: bytes

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode()


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made; also a stream chunk, sent once its arguments are complete."""

    id: str
    name: str
    arguments: dict[str, Any]
    # What the provider wants back with the call when the conversation is sent again (Gemini's thought
    # signature, Claude's thinking blocks), made by :func:`sign`. Clients get it and echo it unchanged.
    signature: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Message:
    role: Role
    text: str = ""
    attachment: Attachment | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # a model turn that called tools
    tool_call_id: str | None = None  # a tool turn: which call this answers
    tool_name: str | None = None  # a tool turn: the called function (Gemini answers by name, not id)
    is_error: bool = False  # a tool turn whose tool failed


@dataclass(frozen=True)
class FunctionTool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class WebSearch:
    """The provider's own web search. Each adapter maps it, or raises Unsupported before any call.

    ``context_size`` (1-20) is how much searching is wanted: a provider without such a knob ignores it.
    """

    context_size: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: dict[str, str] = field(default_factory=dict)  # city, region, country, timezone


@dataclass(frozen=True)
class GenConfig:
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    gen: GenConfig = field(default_factory=GenConfig)
    tools: tuple[FunctionTool, ...] = ()
    web_search: WebSearch | None = None

    @property
    def system(self) -> str | None:
        texts = [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(texts) if texts else None

    @property
    def turns(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.role != "system")

    @property
    def mime_types(self) -> set[str]:
        return {m.attachment.mime_type for m in self.messages if m.attachment}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Citation:
    """A source the answer cites (web search); also a stream chunk."""

    url: str
    title: str = ""


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str
    usage: Usage
    model: str = ""  # the model the provider reports, when it says
    tool_calls: tuple[ToolCall, ...] = ()
    citations: tuple[Citation, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolResult:
    """A stream chunk of the agent loop: what a tool the proxy ran answered (never from an adapter)."""

    call_id: str | None
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Finish:
    finish_reason: str
    usage: Usage


Chunk = TextDelta | ToolCall | Citation | Finish


def sign(kind: str, state: Any) -> str:
    """A call's signature: provider ``kind``'s state, keyed by kind, so that in a fallback one provider
    never receives another's (URL-safe base64 of JSON: opaque to clients, safe in any JSON string)."""
    return base64.urlsafe_b64encode(json.dumps({kind: state}, separators=(",", ":")).encode()).decode()


def signed_state(signature: str | None, kind: str) -> Any:
    """What ``kind``'s adapter put in ``signature``: None if absent, another provider's, or unreadable."""
    if not signature:
        return None
    try:
        state = json.loads(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    except (ValueError, binascii.Error):
        return None
    return state.get(kind) if isinstance(state, dict) else None


def tool_arguments(raw: str | dict | None, *, provider_uid: str, model: str) -> dict[str, Any]:
    """A tool call's arguments as a dict; a model that sent something else fails the attempt."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise exc.Unavailable(
            "the model sent tool call arguments that are not a JSON object",
            provider_uid=provider_uid, model=model, retryable=False,
        )
    return value


def unique_citations(citations) -> tuple[Citation, ...]:
    """Citations in first-seen order, one per URL."""
    seen: dict[str, Citation] = {}
    for citation in citations:
        if citation.url and citation.url not in seen:
            seen[citation.url] = citation
    return tuple(seen.values())


@runtime_checkable
class Chat(Protocol):
    accepted_mime_types: frozenset[str]

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...


def require_mime_types(adapter: Chat, request: ChatRequest, provider_uid: str) -> None:
    """Refuse, before any call, an attachment the provider cannot take."""
    refused = sorted(request.mime_types - adapter.accepted_mime_types)
    if refused:
        raise exc.Unsupported(
            f"{', '.join(refused)} is not accepted by this provider "
            f"(accepted: {', '.join(sorted(adapter.accepted_mime_types))})",
            provider_uid=provider_uid,
            model=request.model,
        )


IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PDF = "application/pdf"
