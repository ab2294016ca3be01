"""The OpenAI-compatible API's request shape (``POST /v1/chat/completions``), as the openai SDK sends it.

Only the outer shape and types are checked here; what each field means to us (roles, content parts,
data URLs, tool-call arguments, values only one provider takes) is checked while translating
(agent/v1_mapping.py), and the limits of our own API apply once the translation is validated as a
``ChatIn`` (agent/schemas.py). A field this API does not take is a 400 naming it, except the
harmless ones in :data:`IGNORED_FIELDS`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from providers.schemas import Strict

# Fields apps and SDK helpers commonly send that change nothing about the answer a provider gives
# here, so they are accepted and dropped rather than refused: `store` and `metadata` are about
# OpenAI storing completions, `prompt_cache_key`, `safety_identifier` and `service_tier` about
# OpenAI's own caching, abuse tracking and billing tier.
IGNORED_FIELDS = frozenset({"store", "metadata", "prompt_cache_key", "safety_identifier", "service_tier"})


class FunctionDefV1(Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    # Structured-output strictness is the provider's to honour: the schema goes as it is either way.
    strict: bool | None = None


class ToolV1(Strict):
    type: Literal["function"]
    function: FunctionDefV1


class NamedFunctionV1(Strict):
    name: str = Field(min_length=1, max_length=64)


class ToolChoiceV1(Strict):
    type: Literal["function"]
    function: NamedFunctionV1


class StreamOptionsV1(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # random padding against length side channels: nothing to pad here


class FunctionCallV1(Strict):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=10_000_000, description="The arguments as a JSON object, in a string")


class ToolCallV1(Strict):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallV1
    extra_content: dict[str, Any] | None = Field(
        None, description="What the proxy gave with the call (`{\"qalby\": {\"signature\": ...}}`), sent back unchanged")


class ChatMessageV1(Strict):
    """One message of any role; which fields a role may carry is checked while translating."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = Field(None, description="A string, or a list of content parts (`text`, `image_url`)")
    name: str | None = Field(None, max_length=100)
    tool_calls: list[ToolCallV1] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, min_length=1, max_length=200)
    # What an assistant message the SDK gave back carries, when an app sends it back as it is.
    refusal: str | None = None
    annotations: list[Any] | None = None


class ChatCompletionIn(Strict):
    model: str = Field(min_length=1, max_length=300, description="`provider_uid/model`: a provider config and a model")
    messages: list[ChatMessageV1] = Field(min_length=1, max_length=1000)
    tools: list[ToolV1] | None = Field(None, max_length=64)
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceV1 | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = Field(None, max_length=20)
    parallel_tool_calls: bool | None = None
    n: int | None = None
    user: str | None = Field(None, max_length=256)
    logprobs: Literal[False] | None = None  # asking for log probabilities is refused: none are returned
    stream: bool | None = None
    stream_options: StreamOptionsV1 | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_FIELDS}
        return data

