"""One undecodable event in a provider's stream is skipped, not fatal.

None of the SDKs can go on once an event of a server-sent-events stream fails to decode: their iterator
raises from inside its generator, which ends it. So the adapters give their SDK an HTTP client whose
response hook (:func:`event_hooks`) sees the bytes of a ``text/event-stream`` answer before the SDK
does: an event whose ``data`` is not JSON is dropped, and counted on the attempt the engine is running
(:data:`attempt`, set by providers/fallback.py), while that attempt has skipped none yet. The second
one is passed on unchanged, so the SDK fails on it as it always would, and the attempt fails with it.

Outside an engine attempt (no :data:`attempt` set) and for encoded (compressed) bodies, nothing is
touched. The hook only re-frames bytes; nothing a client sent reaches it.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from typing import Any, Protocol

import httpx
import httpx2

logger = logging.getLogger("qalby.engine")

TOLERATED = 1  # undecodable events an attempt may skip; the next one fails it

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")  # the blank line that ends an event
_LINE = re.compile(rb"\r\n|\n|\r")


class Tolerant(Protocol):
    provider_uid: str
    model: str
    skipped_events: int


# The engine's attempt whose stream is being read, in this task.
attempt: ContextVar[Tolerant | None] = ContextVar("qalby_stream_attempt", default=None)


def _data(event: bytes) -> bytes | None:
    """The ``data`` of one event (its lines joined), or None when it has none."""
    if event.startswith(b"data: ") and b"\n" not in event and b"\r" not in event:
        return event[6:]  # the usual event: one data line
    lines = [line[5:] for line in _LINE.split(event) if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)


def _keep(event: bytes) -> bool:
    data = _data(event)
    if data is None or data == b"[DONE]":
        return True
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    current = attempt.get()
    if current is None or current.skipped_events >= TOLERATED:
        return True  # the SDK fails on it, as it would without us
    current.skipped_events += 1
    logger.warning("skipped an undecodable stream event from %s (%s): %d bytes", current.provider_uid,
                   current.model, len(event))
    return False


def _events(pending: bytes) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each whole event in ``pending`` (its blank line excluded), and where the
    unfinished rest begins."""
    spans, start = [], 0
    if b"\r" not in pending:  # the usual framing: a fast split
        end = pending.find(b"\n\n")
        while end >= 0:
            spans.append((start, end))
            start = end + 2
            end = pending.find(b"\n\n", start)
        return spans, start
    for boundary in _BOUNDARY.finditer(pending):
        spans.append((start, boundary.start()))
        start = boundary.end()
    return spans, start


class _Events:
    """A response body, event by event, without the one undecodable event an attempt may skip.

    An iterator object, not an async generator: an abandoned body leaves nothing of ours for the
    garbage collector to finalize, only the transport's own iterator, as without this filter."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._chunks: Any = None
        self._pending = b""

    def __aiter__(self) -> _Events:
        self._chunks = self._inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                if not self._pending:
                    raise
                rest, self._pending = self._pending, b""
                return rest
            pending = self._pending + chunk if self._pending else chunk
            spans, rest = _events(pending)
            self._pending = pending[rest:]
            if not spans:
                continue
            dropped = [span for span in spans if not _keep(pending[span[0]:span[1]])]
            if not dropped:
                return pending[:rest]  # the usual case: everything whole passes as it came
            cuts = [0] + [edge for start, end in dropped for edge in (start, end)] + [rest]
            # Keep what lies between the dropped events; each dropped one loses its blank line too.
            kept = [pending[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]
            out = b"".join(piece.lstrip(b"\r\n") if i else piece for i, piece in enumerate(kept))
            if out:
                return out

    async def aclose(self) -> None:
        await self._inner.aclose()


# httpx and httpx2 each check that a body is their own AsyncByteStream (the SDKs are split between them).
_HTTPX_EVENTS = type("Events", (_Events, httpx.AsyncByteStream), {})
_HTTPX2_EVENTS = type("Events", (_Events, httpx2.AsyncByteStream), {})


async def _tolerate(response: Any) -> None:
    if attempt.get() is None or not response.headers.get("content-type", "").startswith("text/event-stream"):
        return
    if response.headers.get("content-encoding", "identity") != "identity":
        return
    events = _HTTPX2_EVENTS if isinstance(response, httpx2.Response) else _HTTPX_EVENTS
    response.stream = events(response.stream)


def event_hooks() -> dict[str, list]:
    """``event_hooks`` for an SDK's ``httpx`` or ``httpx2`` ``AsyncClient``."""
    return {"response": [_tolerate]}
