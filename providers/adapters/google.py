"""Google Gemini, through google-genai."""

from typing import Literal

from providers.adapters.base import ProviderOptions


class Options(ProviderOptions):
    api_version: Literal["v1", "v1beta"] | None = None
