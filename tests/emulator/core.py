"""Shared machinery of the provider emulators: the fault grammar, the request record, stream pacing.

Faults are chosen by the model name, so they reach the emulator through any client with no
side channel. The grammar is documented in tests/emulator/README.md; in short::

    <base model>~<fault>~<fault>...

A provider module asks ``emu.fault(model)`` and formats the outcome in its own wire format.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

SECRET_HEADERS = {"authorization", "x-api-key", "xi-api-key", "x-goog-api-key", "api-key"}


class FaultSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    """What the emulator should do to one request; every field is off by default."""

    status: int | None = None  # answer with this HTTP error status
    times: int | None = None  # ... only for the first N requests with this model (None: always)
    retry_after: float | None = None  # Retry-After seconds sent with the error
    kind: str | None = None  # "context_length" | "content_policy" (400 with the provider's body)
    reset: bool = False  # drop the connection (RST) before any header
    hang: bool = False  # accept the request and never answer
    slow: float = 0.0  # seconds before the first byte / first stream event
    latency: float = 0.0  # fixed seconds before any answer (benchmarks)
    gap: float = 0.0  # seconds between stream events
    cut: int | None = None  # stream: close the connection after N events, no terminator
    stall: int | None = None  # stream: stop sending after N events, keep the connection open
    bad: int | None = None  # stream: replace event N (0-based) by a malformed one
    bad_again: int | None = None  # stream: ... and event M too (badN+M)
    nodone: bool = False  # stream: omit the provider's terminator
    tokens: int | None = None  # answer with N tokens of text
    down: float | None = None  # fail (the status, 503 by default) for S seconds from the first request, then recover
    noprefill: bool = False  # refuse a conversation that ends with an assistant turn (prefill), 400
    echo: bool = False  # the error's message echoes the request: headers (keys included), query, body

    @property
    def fails_request(self) -> bool:
        return self.status is not None or self.kind is not None or self.reset or self.hang


_NUMBER = r"(\d+(?:\.\d+)?)"
_GRAMMAR: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"e(\d{3})(?:x(\d+))?"), lambda m: {"status": int(m[1]), "times": _opt_int(m[2])}),
    (re.compile(rf"ra{_NUMBER}"), lambda m: {"retry_after": float(m[1])}),
    (re.compile(r"ctx(?:x(\d+))?"), lambda m: {"kind": "context_length", "status": 400, "times": _opt_int(m[1])}),
    (re.compile(r"policy(?:x(\d+))?"), lambda m: {"kind": "content_policy", "status": 400, "times": _opt_int(m[1])}),
    (re.compile(r"reset(?:x(\d+))?"), lambda m: {"reset": True, "times": _opt_int(m[1])}),
    (re.compile(r"hang"), lambda m: {"hang": True}),
    (re.compile(rf"slow{_NUMBER}"), lambda m: {"slow": float(m[1])}),
    (re.compile(rf"lat{_NUMBER}"), lambda m: {"latency": float(m[1]) / 1000}),
    (re.compile(rf"gap{_NUMBER}"), lambda m: {"gap": float(m[1]) / 1000}),
    (re.compile(r"cut(\d+)"), lambda m: {"cut": int(m[1])}),
    (re.compile(r"stall(\d+)"), lambda m: {"stall": int(m[1])}),
    (re.compile(r"bad(\d+)(?:\+(\d+))?"), lambda m: {"bad": int(m[1]), "bad_again": _opt_int(m[2])}),
    (re.compile(r"nodone"), lambda m: {"nodone": True}),
    (re.compile(r"long(\d+)"), lambda m: {"tokens": int(m[1])}),
    (re.compile(rf"down{_NUMBER}"), lambda m: {"down": float(m[1])}),
    (re.compile(r"noprefill"), lambda m: {"noprefill": True}),
    (
        re.compile(r"echo(\d{3})?(?:x(\d+))?"),
        lambda m: {"echo": True, "status": int(m[1] or 400), "times": _opt_int(m[2])},
    ),
]

# An echo token anywhere in a raw request (JSON body, multipart form, URL path): the key check runs
# before the body is parsed, so a wrong-key answer finds its echo fault this way.
_ECHO_IN_RAW = re.compile(rb"~echo(?:\d{3})?(?:x\d+)?(?![A-Za-z0-9.+])")
ECHO_BODY_LIMIT = 600

# How current models refuse a conversation ending with an assistant turn (a prefilled answer).
PREFILL_REFUSAL = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)


def echo_requested(scope: dict[str, Any]) -> bool:
    """Whether the request's model (wherever the provider carries it) names an ``echo`` fault."""
    raw = scope.get("emulator.body", b"") + b" " + scope.get("path", "").encode()
    return bool(_ECHO_IN_RAW.search(raw))


def echo_message(scope: dict[str, Any]) -> str:
    """An error message that echoes the request as it arrived, secrets unredacted.

    Some real providers put (part of) what they received in an error, key included: this lets a
    test prove that the proxy scrubs upstream text. The method, path and query string come first,
    then the headers (the credential ones first) and the start of the body (``ECHO_BODY_LIMIT`` chars).
    """
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    headers.sort(key=lambda item: item[0] not in SECRET_HEADERS)
    query = scope.get("query_string", b"").decode("latin-1")
    body = scope.get("emulator.body", b"").decode("utf-8", "replace")[:ECHO_BODY_LIMIT]
    return (
        f"Could not process the request. echoed request: {scope.get('method', '')} {scope.get('path', '')}"
        f"{'?' + query if query else ''} headers: {'; '.join(f'{k}: {v}' for k, v in headers)} body: {body}"
    )


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def parse_model(model: str) -> tuple[str, Fault]:
    """Split ``gpt-4o~e503x1~ra0.2`` into ``("gpt-4o", Fault(status=503, times=1, retry_after=0.2))``."""
    base, *tokens = model.split("~")
    fault = Fault()
    for token in tokens:
        for pattern, build in _GRAMMAR:
            match = pattern.fullmatch(token)
            if match:
                fault = replace(fault, **build(match))
                break
        else:
            raise FaultSyntaxError(f"unknown fault {token!r} in model {model!r}")
    return base, fault


@dataclass
class Recorded:
    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() at arrival
    disconnected_at: float | None = None  # the client hung up before the answer was complete

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "at": self.at,
        }


DEFAULT_KEYS = {
    "openai": "sk-emu-openai-0123456789",
    "anthropic": "sk-ant-emu-0123456789",
    "google": "AIza-emu-0123456789",
    "groq": "gsk_emu_0123456789",
    "elevenlabs": "xi-emu-0123456789",
}


@dataclass
class Emulator:
    """State shared by every provider app of one emulator process."""

    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    requests: list[Recorded] = field(default_factory=list)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _first_seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def reset(self) -> None:
        self.requests.clear()
        self._counts.clear()
        self._first_seen.clear()

    def recorded(self, provider: str | None = None, path_contains: str = "") -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (provider is None or r.provider == provider) and path_contains in r.path
        ]

    def attempt(self, provider: str, model: str) -> int:
        """Count requests per provider and full model string; returns this one's 1-based number."""
        key = (provider, model)
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key]

    def fault(self, provider: str, model: str) -> tuple[str, Fault]:
        """The base model and the fault that applies to this request (``times`` already resolved)."""
        base, fault = parse_model(model)
        number = self.attempt(provider, model)
        if fault.times is not None and number > fault.times:
            fault = replace(fault, status=None, kind=None, reset=False, times=None)
        if fault.down is not None:
            first = self._first_seen.setdefault((provider, model), time.monotonic())
            if time.monotonic() - first < fault.down:
                fault = replace(fault, status=fault.status or 503)
            else:
                fault = replace(fault, status=None, kind=None, reset=False, times=None)
        return base, fault


def redact_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = "[redacted]" if name in SECRET_HEADERS else value
    return out


def bearer_or_header(headers: dict[str, str], *names: str) -> str | None:
    """The credential a client sent, from ``Authorization: Bearer`` or any of the named headers."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in names:
        if headers.get(name):
            return headers[name]
    return None


def abort_connection(scope: dict[str, Any]) -> None:
    """Reset the client's TCP connection (RST), before any response byte.

    ASGI has no way to drop a connection, so the recording middleware stores uvicorn's own
    ``send`` callable in the scope; it is a bound method of uvicorn's request cycle, which holds
    the transport (uvicorn is pinned, see requirements.lock).
    """
    transport = scope["emulator.raw_send"].__self__.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def wait_forever() -> None:
    """Never answer; the handler is cancelled when the server shuts down or the client leaves."""
    await asyncio.sleep(3600)


class CutStream(Exception):
    """Raised inside a streaming body to close the connection without the chunked terminator."""


async def paced(
    fault: Fault,
    events: list[bytes],
    *,
    malformed: bytes,
    terminator: Iterable[bytes] = (),
) -> AsyncIterator[bytes]:
    """Yield a stream's encoded events with the stream faults applied.

    ``events`` are the provider's encoded events (e.g. ``b"data: {...}\\n\\n"``); ``terminator``
    the encoded events that close a proper stream (``data: [DONE]``, ``message_stop``...), which
    ``nodone`` omits. ``malformed`` replaces event ``bad``.
    """
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.slow:
        await asyncio.sleep(fault.slow)
    every = list(events) + ([] if fault.nodone else list(terminator))
    for index, event in enumerate(every):
        if fault.cut is not None and index >= fault.cut:
            raise CutStream(f"stream cut after {fault.cut} events")
        if fault.stall is not None and index >= fault.stall:
            await wait_forever()
        if index and fault.gap:
            await asyncio.sleep(fault.gap)
        yield malformed if index in (fault.bad, fault.bad_again) else event


def words(count: int, seed: str = "") -> list[str]:
    """Deterministic filler tokens for long answers."""
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    offset = sum(seed.encode()) % len(vocab)
    return [vocab[(offset + i) % len(vocab)] for i in range(count)]


def now() -> float:
    return time.monotonic()


# ---- Deterministic "model" behaviour shared by every chat provider ----------------------------

_DIRECTIVE = re.compile(r"CALL\s+([A-Za-z0-9_.\-]+)\s*(\{.*?\})?\s*(?:;|$)", re.S)


@dataclass(frozen=True)
class Prompt:
    """What a chat request carried, normalised from any provider's wire format."""

    base_model: str
    last_user_text: str = ""
    system: str | None = None
    mimes: tuple[str, ...] = ()  # mime types of every image/document in the conversation, in order
    temperature: float | None = None
    max_tokens: int | None = None
    tool_names: tuple[str, ...] = ()  # function tools offered
    tool_results: tuple[str, ...] = ()  # contents of tool results after the last user message, in order
    web_search: bool = False
    input_text: str = ""  # all input text, for token counting
    prefilled: bool = False  # the conversation ends with an assistant turn (a prefilled answer)


def echo_text(prompt: Prompt) -> str:
    """The answer text: the last user message, then what the emulator received, in a fixed form.

    Example: ``hello [model=gpt-4o system=be brief images=1:image/png temperature=0.2 max_tokens=50]``
    """
    mimes = f":{','.join(prompt.mimes)}" if prompt.mimes else ""
    parts = [
        f"model={prompt.base_model}",
        f"system={prompt.system if prompt.system else '-'}",
        f"images={len(prompt.mimes)}{mimes}",
        f"temperature={'-' if prompt.temperature is None else _num(prompt.temperature)}",
        f"max_tokens={'-' if prompt.max_tokens is None else prompt.max_tokens}",
    ]
    if prompt.tool_results:
        parts.append("tool_results=" + " | ".join(prompt.tool_results))
    return f"{prompt.last_user_text} [{' '.join(parts)}]"


def _num(value: float) -> str:
    return f"{value:g}"


def split_tokens(text: str) -> list[str]:
    """Stream pieces: each word with the whitespace that follows it."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


def count_tokens(text: str) -> int:
    return len(text.split())


def directives(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``CALL add {"a": 1, "b": 2}; CALL lookup {"key": "x"}`` -> [("add", {...}), ("lookup", {...})]."""
    import json

    found = []
    for match in _DIRECTIVE.finditer(text):
        try:
            arguments = json.loads(match[2]) if match[2] else {}
        except ValueError:
            arguments = {}
        found.append((match[1], arguments))
    return found


def next_action(prompt: Prompt) -> tuple[str, Any]:
    """Decide the model's turn: ``("call", (name, arguments))`` or ``("text", answer)``.

    The last user message may hold ``CALL <tool> {json}`` directives separated by ``;``. The model
    calls them one per turn, in order, as long as the tool is offered; once every call has its
    result, it answers with ``echo_text`` (which lists the tool results).
    """
    wanted = [(name, args) for name, args in directives(prompt.last_user_text) if name in prompt.tool_names]
    done = len(prompt.tool_results)
    if done < len(wanted):
        return "call", wanted[done]
    return "text", echo_text(prompt)


def search_results(query: str, count: int = 2) -> list[dict[str, str]]:
    """Deterministic web search hits for a query: [{"url", "title", "snippet"}]."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "query"
    return [
        {
            "url": f"https://example.com/{slug}/{i + 1}",
            "title": f"Result {i + 1} for {query}",
            "snippet": f"Snippet {i + 1} about {query}.",
        }
        for i in range(count)
    ]
