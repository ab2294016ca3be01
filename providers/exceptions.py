"""The one error hierarchy. qalby_site/api.py alone turns these into HTTP responses.

Adapters turn their SDK's errors into ProviderError subclasses in one place each
(``map_error``), by upstream status first and message second. ``retryable`` says whether the
engine may try the same provider once more; a fallback moves on to the next request whatever it says.
"""

from __future__ import annotations


class QalbyError(Exception):
    """An error a client can act on; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(QalbyError):
    status = 400


class MissingScope(QalbyError):
    status = 403


class Forbidden(QalbyError):
    """The client key may not do this (a route it is not given, a provider config named directly)."""

    status = 403


class NotFound(QalbyError):
    status = 404


class UnknownProviderUid(NotFound):
    """A request named a provider config that does not exist. ``configured`` is what does: the error
    handler shows it to keys that may manage configs, who could list them anyway."""

    LISTED = 20  # configured uids named, at most

    def __init__(self, uid: str, configured: list[str]) -> None:
        super().__init__(f"unknown provider_uid '{uid}'")
        self.configured = configured


class DatabaseUnavailable(QalbyError):
    """The database cannot be reached and nothing cached can answer instead (providers/outage.py)."""

    status = 503

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Conflict(QalbyError):
    """The change would break something that depends on it (a config routes still use)."""

    status = 409


class PayloadTooLarge(QalbyError):
    status = 413


class ProviderError(QalbyError):
    """One provider attempt failed. Messages never carry keys (adapters build them from SDK text)."""

    status = 502
    outcome = "error"  # how an attempt that ended this way is recorded
    retryable = False

    def __init__(
        self,
        detail: str,
        *,
        provider_uid: str = "",
        model: str = "",
        upstream_status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(detail)
        self.provider_uid = provider_uid
        self.model = model
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable

    @property
    def kind(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        where = f"{self.provider_uid}/{self.model}" if self.model else self.provider_uid
        status = f" (HTTP {self.upstream_status})" if self.upstream_status else ""
        return f"{where}: {self.detail}{status}" if where else self.detail


class RateLimited(ProviderError):
    status = 429


class Timeout(ProviderError):
    status = 504
    outcome = "timeout"


class Unavailable(ProviderError):
    """5xx, overload, a dropped connection, a broken or truncated stream."""

    status = 502
    retryable = True


class BadRequest(ProviderError):
    """The provider refused the request itself (invalid, too long, content policy)."""

    status = 400


class ContentPolicy(BadRequest):
    """The provider refused the content itself. Not a provider failure: another provider would be
    asked to produce what one refused on policy grounds, so a chain stops here (unless the request
    lists ``content_policy`` in ``fallback_on``)."""

    @property
    def kind(self) -> str:
        return "content_policy"


class AuthFailed(ProviderError):
    """The provider refused our credentials: the gateway's configuration, not the client, is at fault."""

    status = 502


class Unsupported(ProviderError):
    """The provider or model cannot do what was asked (a mime type, a tool); refused before any call."""

    status = 400


class ProviderDisabled(ProviderError):
    status = 503


class AllAttemptsFailed(QalbyError):
    """Every attempt failed; the status is what a client can act on, from what the attempts had in common."""

    def __init__(self, attempts: list, errors: list[ProviderError]) -> None:
        self.attempts = attempts
        self.errors = errors
        self.status, self.retry_after = _common_status(errors)
        kinds = {error.kind for error in errors}
        self.error_type = kinds.pop() if len(kinds) == 1 else None  # what every attempt ran into, if one thing
        if len(errors) == 1:
            detail = errors[0].describe()
        else:
            detail = f"all {len(errors)} attempts failed: " + "; ".join(e.describe() for e in errors)
        super().__init__(detail)


def _common_status(errors: list[ProviderError]) -> tuple[int, float | None]:
    if not errors:
        return 502, None
    if all(isinstance(e, RateLimited) for e in errors):
        waits = [e.retry_after for e in errors if e.retry_after is not None]
        return 429, min(waits) if waits else None
    if all(isinstance(e, Timeout) for e in errors):
        return 504, None
    if all(isinstance(e, BadRequest | Unsupported) for e in errors):
        return 400, None
    if all(isinstance(e, ProviderDisabled) for e in errors):
        return 503, None
    return 502, None
