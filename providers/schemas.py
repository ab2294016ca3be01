"""The API shapes every app shares: the provider configs API, single-or-chain bodies, attempts."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from providers import registry
from providers.hedging import HedgeAfter
from providers.models import ProviderConfig

# What a provider config's uid may be (a slug): requests naming anything else are refused as input.
PROVIDER_UID = r"^[-a-zA-Z0-9_]+$"
# What a model name may be: some SDKs put it in the URL path (Gemini's models/{model}:generateContent),
# so nothing that could step out of that path segment (.., ?, #, %, \, spaces) and nothing that
# cannot travel back in a response header (X-Model).
MODEL = r"^[A-Za-z0-9][A-Za-z0-9_:@+~=-]*(?:[./][A-Za-z0-9_:@+~=-]+)*$"  # a dot or slash only between names


class Strict(BaseModel):
    """A request shape: an unknown field is a 400, not silently ignored.

    A plain pydantic model, not ninja's Schema: Schema's root validator validates a model that forbids
    unknown fields twice (then once more through a wrapper for reading Django objects, which a JSON
    body never is), and again at every level of nesting: a chat body's messages were validated four
    times each (#15).
    """

    model_config = ConfigDict(extra="forbid")

    def dict(self, **kwargs: Any) -> dict[str, Any]:
        return self.model_dump(**kwargs)


class ProviderConfigIn(Strict):
    uid: str = Field(min_length=1, max_length=64, pattern=PROVIDER_UID)
    provider: str = Field(min_length=1, max_length=32, description=f"One of: {', '.join(registry.KINDS)}")
    api_key: str = Field(min_length=1, max_length=4096)
    base_url: str | None = Field(None, max_length=500)
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value in registry.KINDS:
            return value
        # 'gemini' for google: a vendor's product name is a likely first guess.
        guess = next((kind for kind, row in registry.KINDS.items() if value.lower() in row.label.lower().split()), None)
        raise ValueError(f"'{value}' is not a provider; one of: {', '.join(registry.KINDS)}"
                         + (f" (did you mean '{guess}'?)" if guess and guess != value else ""))


class ProviderConfigOut(Schema):
    uid: str
    provider: str
    api_key: str = Field(description="Masked: at most the last 4 characters are shown")
    base_url: str | None
    options: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(config: ProviderConfig) -> "ProviderConfigOut":
        return ProviderConfigOut(
            uid=config.uid,
            provider=config.provider,
            api_key=config.masked_key,
            base_url=config.base_url or None,
            options=config.options,
            enabled=config.enabled,
            created_at=config.created_at,
            updated_at=config.updated_at,
        )


# What a mime type may look like (type/subtype, lower case); each endpoint says which it takes.
MIME = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


class EntryIn(Strict):
    """What every request names, alone or as an entry of a chain: which provider config, which model."""

    provider_uid: str = Field(min_length=1, max_length=64, pattern=PROVIDER_UID, description="A provider config's uid")
    model: str = Field(min_length=1, max_length=200, pattern=MODEL)


class StreamLimitsIn(Strict):
    """Deadlines of a streamed answer, on one request or on a whole chain (a request's own come first)."""

    first_chunk_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: seconds to the first chunk")
    idle_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: longest gap between chunks, seconds")


class ChainIn(Strict):
    """What every fallback chain adds to its ``requests`` (providers/planning.py reads it)."""

    strategy: Literal["sequential", "parallel"] = "sequential"
    timeout_per_request: float | None = Field(None, gt=0, le=3600, description="Deadline of each attempt, seconds")
    timeout_total: float | None = Field(None, gt=0, le=7200, description="Deadline of the whole chain, seconds")
    fallback_on: list[Literal["content_policy"]] = Field(
        default_factory=list, max_length=1,
        description="Refusals after which the chain still moves on to the next request. By default a content-policy "
                    "refusal ends the chain: the next provider would only be asked for what one refused.",
    )
    hedge_after: HedgeAfter = Field(
        None, description="Sequential chains: seconds after which an entry that has not produced its first chunk "
                          "gets company, the next entry starting too (the first to produce one wins, the other is "
                          "cancelled); `auto`: learned from recent times to the first chunk of that provider and "
                          "model; `off`: never. Default: each provider config's `hedge_after` option, else `auto` "
                          "for streams and `off` for whole answers",
    )


def _shape(value: Any) -> str:
    if isinstance(value, dict) and "route" in value:
        return "route"
    return "fallback" if isinstance(value, dict) and "requests" in value else "single"


ROUTE_NAME = Field(min_length=1, max_length=64, pattern=PROVIDER_UID,
                   description="A route's name: the chain an administrator defined (GET /routes)")


def single_or_fallback(single: type, fallback: type, route: type | None = None) -> Any:
    """A request body that is one request, a fallback chain ``{"requests": [...]}``, or (``route``) a
    named route ``{"route": "name", ...}`` whose entries the server holds.

    The tags name the shape in validation errors; qalby_site/api.py leaves them out of field names.
    """
    shapes = Annotated[fallback, Tag("fallback")] | Annotated[single, Tag("single")]
    if route is not None:
        shapes = shapes | Annotated[route, Tag("route")]
    return Annotated[shapes, Discriminator(_shape)]


class AttemptOut(Schema):
    """One try of one request of a fallback, as answers and error bodies report it."""

    provider_uid: str
    model: str
    status: Literal["ok", "error", "timeout", "cancelled", "skipped", "pending"]
    error: str | None
    error_type: str | None = Field(
        None, description="RateLimited, Timeout, Unavailable, BadRequest, content_policy, AuthFailed, CircuitOpen (skipped)...")
    latency_ms: int | None
    skipped_events: int = Field(
        0, description="Streams: undecodable events of the provider's stream that were skipped (one is; a second "
                       "fails the attempt)")
