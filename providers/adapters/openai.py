"""OpenAI."""

from pydantic import Field

from providers.adapters.base import ProviderOptions


class Options(ProviderOptions):
    organization: str | None = Field(None, max_length=200)
    project: str | None = Field(None, max_length=200)
