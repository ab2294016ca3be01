"""What adapters share: request, result and chunk types, capability protocols, error mapping.

An adapter module defines ``Options`` (validated provider settings), ``PROVIDER_OPTIONS`` (by
capability name, the ``provider_options`` keys a client may send: request-body fields only, never
anything that reaches the SDK's client options, since the stored key goes wherever those point)
and ``Adapter``, built once per provider config with a :class:`ConfigSnapshot`. An adapter implements the capabilities its
vendor offers (``Chat``, ``Speech``, ``Transcription``) and nothing else; the engine asks
``isinstance(adapter, Chat)``.

An adapter must:
- build its SDK client once, with the SDK's own retries off (the engine owns retries);
- turn every SDK error into a ProviderError subclass in one place (``map_error``);
- end every stream with a :class:`Finish` chunk, or raise: a stream that stops without the
  provider's finish signal raises ``Unavailable``, never ends quietly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import httpx2
from pydantic import BaseModel, ConfigDict, Field

from providers import exceptions as exc


class ProviderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout: float | None = Field(None, gt=0, le=3600, description="Deadline of one attempt, seconds")
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: seconds to the first chunk")
    idle_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: longest gap between chunks")


@dataclass(frozen=True)
class ConfigSnapshot:
    """What an adapter is built from: a provider config as it was when read (plaintext key inside)."""

    uid: str
    provider: str
    api_key: str = field(repr=False)
    base_url: str
    options: dict[str, Any]
    enabled: bool
    version: str  # changes whenever the config changes; the client cache compares it

    def __repr__(self) -> str:
        return f"ConfigSnapshot(uid={self.uid!r}, provider={self.provider!r})"


# ---- chat ---------------------------------------------------------------------------------------

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
    import json

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


# ---- errors -------------------------------------------------------------------------------------

_CONTEXT_HINTS = (
    "context_length", "context length", "maximum context", "too many tokens", "prompt is too long",
    "input token count",
)
_POLICY_HINTS = ("content_policy", "content policy", "safety", "content_filter", "moderation", "flagged")


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds, from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            from datetime import UTC, datetime

            return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return None


def error_for_status(
    status: int,
    message: str,
    *,
    provider_uid: str,
    model: str,
    retry_after: float | None = None,
) -> exc.ProviderError:
    """The typed error for an upstream HTTP status (and, for 400s, what the message says)."""
    lowered = message.lower()
    context = {"provider_uid": provider_uid, "model": model, "upstream_status": status}
    if status == 429:
        return exc.RateLimited(message or "rate limited", retry_after=retry_after, **context)
    if status in (401, 403):
        return exc.AuthFailed(message or "the provider refused the credentials", **context)
    if status == 408:
        return exc.Timeout(message or "the provider timed out", **context)
    if status >= 500:
        return exc.Unavailable(message or "the provider failed", retry_after=retry_after, **context)
    if status == 400 and any(h in lowered for h in _CONTEXT_HINTS):
        return exc.BadRequest(f"context length exceeded: {message}", **context)
    if status == 400 and any(h in lowered for h in _POLICY_HINTS):
        return exc.BadRequest(f"refused by content policy: {message}", **context)
    return exc.BadRequest(message or f"the provider refused the request (HTTP {status})", **context)


_KEY_PATTERN = None

# The SDKs are split between httpx and its successor httpx2; a broken stream surfaces raw from either.
TIMEOUT_ERRORS = (httpx.TimeoutException, httpx2.TimeoutException)
TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)


def redact(text: str, secret: str = "") -> str:
    """Remove the config's key, and anything shaped like a provider key, from upstream text."""
    global _KEY_PATTERN
    import re

    if _KEY_PATTERN is None:
        _KEY_PATTERN = re.compile(r"\b(sk-|sk_|gsk_|xi-|AIza|qpk_)[A-Za-z0-9_\-*.]{4,}")
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def upstream_message(body: Any, fallback: str) -> str:
    """The human part of a Stainless SDK's error body (OpenAI, Anthropic and Groq share the shape)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or ""
            code = inner.get("code") or inner.get("type") or ""
            if message and code and str(code) not in message:
                return f"{message} [{code}]"
            return message or fallback
    return fallback


def map_stainless_error(error: BaseException, sdk: Any, *, provider_uid: str, model: str, secret: str) -> exc.ProviderError | None:
    """Typed error for an exception of a Stainless-generated SDK (openai, anthropic, groq), else None."""
    import json

    context = {"provider_uid": provider_uid, "model": model}
    if isinstance(error, (sdk.APITimeoutError, *TIMEOUT_ERRORS)):
        return exc.Timeout("the provider did not answer in time", **context)
    if isinstance(error, (sdk.APIConnectionError, *TRANSPORT_ERRORS)):
        cause = error.__cause__ or error
        return exc.Unavailable(f"connection to the provider failed ({type(cause).__name__})", **context)
    if isinstance(error, sdk.APIStatusError):
        message = redact(upstream_message(error.body, error.message), secret)
        return error_for_status(
            error.status_code, message, retry_after=retry_after_seconds(error.response.headers), **context
        )
    if isinstance(error, sdk.APIError):  # an error event inside a stream
        return exc.Unavailable(f"the provider reported an error mid-stream: {redact(error.message, secret)}", **context)
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        return exc.Unavailable("the provider sent a malformed stream chunk", **context)
    return None
