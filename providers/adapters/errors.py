"""SDK errors to ProviderError: what every adapter's ``map_error`` is built from.

An adapter's ``map_error(error, model)`` returns the typed error for an exception its SDK (or the
SDK's HTTP client) raised, or None for one it does not know, which the engine then lets through
as the bug it is. Statuses come first (:func:`error_for_status`), the message second; the wait a
provider asks for travels as ``retry_after``. Text taken from upstream goes through :func:`redact`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import httpx2

from providers import exceptions as exc
from providers import registry

_CONTEXT_HINTS = (
    "context_length", "context length", "maximum context", "too many tokens", "prompt is too long",
    "input token count",
)
_POLICY_HINTS = ("content_policy", "content policy", "content filtering", "safety", "content_filter", "moderation",
                 "flagged")

# The SDKs are split between httpx and its successor httpx2; a broken stream surfaces raw from either.
TIMEOUT_ERRORS = (httpx.TimeoutException, httpx2.TimeoutException)
TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)

# Every vendor's key shape (registry rows), and the proxy's own client keys (qpk_).
_KEY_PREFIXES = sorted({*registry.KEY_PREFIXES, "qpk_"}, key=lambda prefix: (-len(prefix), prefix))
_KEY_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, _KEY_PREFIXES)) + r")[A-Za-z0-9_\-*.]{4,}")


def redact(text: str, secret: str = "") -> str:
    """Remove the config's key, and anything shaped like a provider key, from upstream text."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


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
        return exc.ContentPolicy(f"refused by content policy: {message}", **context)
    return exc.BadRequest(message or f"the provider refused the request (HTTP {status})", **context)


def transport_error(
    error: BaseException,
    *,
    provider_uid: str,
    model: str,
    timeouts: tuple[type[BaseException], ...] = (),
    connections: tuple[type[BaseException], ...] = (),
) -> exc.ProviderError | None:
    """Timeout or Unavailable for an error of the connection, else None.

    httpx and httpx2 errors are known here; ``timeouts`` and ``connections`` add an SDK's own
    wrappers of them (a wrapper is named by the transport error under it).
    """
    context = {"provider_uid": provider_uid, "model": model}
    if isinstance(error, (*timeouts, *TIMEOUT_ERRORS)):
        return exc.Timeout("the provider did not answer in time", **context)
    if isinstance(error, (*connections, *TRANSPORT_ERRORS)):
        cause = error if isinstance(error, TRANSPORT_ERRORS) else (error.__cause__ or error)
        return exc.Unavailable(f"connection to the provider failed ({type(cause).__name__})", **context)
    return None


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
    context = {"provider_uid": provider_uid, "model": model}
    connection = transport_error(
        error, timeouts=(sdk.APITimeoutError,), connections=(sdk.APIConnectionError,), **context
    )
    if connection is not None:
        return connection
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
