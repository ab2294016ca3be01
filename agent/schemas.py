"""The agent API's request and response shapes (paths and payloads as the original service)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

_MIME = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class MessageIn(Strict):
    role: Literal["user", "model", "assistant", "system"]
    content: str = Field(max_length=20_000_000)
    mime_type: str | None = Field(None, max_length=100, description="Set for a binary message: content is base64")
    caption: str | None = Field(None, max_length=100_000)

    @field_validator("mime_type")
    @classmethod
    def _mime(cls, value: str | None) -> str | None:
        if value is not None and not _MIME.match(value.lower()):
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
    provider_options: dict[str, Any] = Field(default_factory=dict, description="Passed to the provider as is")


class ChatIn(Strict):
    provider_uid: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    gen_config: GenConfigIn = Field(default_factory=GenConfigIn)
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600)
    idle_timeout: float | None = Field(None, gt=0, le=3600)

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list) -> list:
        if value:
            raise ValueError("tools are not available on this server yet")
        return value

    @model_validator(mode="after")
    def _has_a_turn(self) -> ChatIn:
        if all(m.role == "system" for m in self.messages):
            raise ValueError("messages need at least one user or model message")
        return self


class FallbackIn(Strict):
    requests: list[ChatIn] = Field(min_length=1, max_length=10)
    strategy: Literal["sequential", "parallel"] = "sequential"
    timeout_per_request: float | None = Field(None, gt=0, le=3600, description="Deadline of each attempt, seconds")
    timeout_total: float | None = Field(None, gt=0, le=7200, description="Deadline of the whole chain, seconds")
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600)
    idle_timeout: float | None = Field(None, gt=0, le=3600)


def _shape(value: Any) -> str:
    return "fallback" if isinstance(value, dict) and "requests" in value else "single"


AgentIn = Annotated[
    Annotated[FallbackIn, Tag("fallback")] | Annotated[ChatIn, Tag("single")],
    Discriminator(_shape),
]


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int


class AttemptOut(Schema):
    provider_uid: str
    model: str
    status: Literal["ok", "error", "timeout", "cancelled", "pending"]
    error: str | None
    error_type: str | None = Field(None, description="RateLimited, Timeout, Unavailable, BadRequest, AuthFailed...")
    latency_ms: int | None


class RunOut(Schema):
    request_id: str
    output: str
    provider_uid: str
    model: str
    finish_reason: str
    usage: UsageOut
    attempts: list[AttemptOut]
