"""ElevenLabs: text-to-speech and speech-to-text through the official async SDK."""

from __future__ import annotations

from elevenlabs.client import AsyncElevenLabs

from providers.adapters.base import ConfigSnapshot, ProviderOptions
from providers.exceptions import ProviderError


class Options(ProviderOptions):
    pass


class Adapter:
    def __init__(self, config: ConfigSnapshot) -> None:
        Options.model_validate(config.options)
        self.uid = config.uid
        self._secret = config.api_key
        self.client = AsyncElevenLabs(api_key=config.api_key, base_url=config.base_url or None)

    def map_error(self, error: BaseException, model: str) -> ProviderError | None:
        return None
