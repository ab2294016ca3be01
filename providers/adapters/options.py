"""What an adapter is built from: a provider config's options, validated, and the config itself.

Each vendor's ``Options`` subclasses :class:`ProviderOptions`, which holds the deadlines the engine
reads from any config; the admin and the API validate a config's ``options`` with it before saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers.hedging import HedgeAfter


class ProviderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout: float | None = Field(None, gt=0, le=3600, description="Deadline of one attempt, seconds")
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: seconds to the first chunk")
    idle_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: longest gap between chunks")
    breaker_threshold: int | None = Field(
        None, ge=0, le=1000, description="Circuit breaker: failed attempts in a row that open it (0: never)")
    breaker_cooldown: float | None = Field(
        None, gt=0, le=3600, description="Circuit breaker: seconds open before a probe")
    hedge_after: HedgeAfter = Field(
        None, description="Chains: seconds without a first chunk after which the next entry starts too; "
                          "auto (learned) or off. A request's hedge_after comes first")


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
