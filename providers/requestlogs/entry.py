"""The request path's side of the request logs: one :class:`Entry` per API call, filled as it runs.

The middleware starts the entry and puts it in :data:`current`; the engine attaches its attempts
(:func:`attach_attempts`), services add usage and content (:func:`note`). Nothing here touches the
database: when the answer, or the stream, ends, the middleware hands the entry to the writer.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings


@dataclass
class Entry:
    """What the request path knows about one API call; becomes a RequestLog and its Attempts."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    client_key_name: str = ""
    client_key_prefix: str = ""
    mode: str = ""
    status: int = 0
    outcome: str = ""
    attempts: list = field(default_factory=list)  # the engine's Attempt objects, live until the end
    usage: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    prompt: str = ""
    answer: str = ""
    latency_ms: int | None = None
    first_chunk_ms: int | None = None
    route: str = ""
    route_version: int | None = None

    def finish(self, status: int, outcome: str | None = None) -> None:
        self.status = status
        self.outcome = outcome or ("ok" if status < 400 else "error")
        self.latency_ms = int((time.monotonic() - self.started) * 1000)


current: contextvars.ContextVar[Entry | None] = contextvars.ContextVar("qalby_log_entry", default=None)


def note(**fields: Any) -> None:
    """Add to the current request's log entry (no-op outside a logged request)."""
    entry = current.get()
    if entry is None:
        return
    for name, value in fields.items():
        if name in {"input_tokens", "output_tokens", "characters", "audio_bytes", "audio_seconds"}:
            entry.usage[name] = value
        elif name in {"prompt", "answer"}:
            if settings.QALBY_LOG_CONTENT:
                setattr(entry, name, str(value)[: settings.QALBY_LOG_CONTENT_MAX_CHARS])
        else:
            setattr(entry, name, value)


def attach_attempts(attempts: list, strategy: str, count: int) -> None:
    """Called by the engine for every chain it runs: the log shows the same attempts as the answer."""
    entry = current.get()
    if entry is not None:
        entry.attempts = attempts
        entry.mode = "single" if count == 1 else strategy
