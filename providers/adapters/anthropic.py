"""Anthropic."""

from providers.adapters.base import ProviderOptions


class Options(ProviderOptions):
    pass
