"""The one list of provider kinds. Adding a vendor: one adapter module, one line here, one test module.

Each module defines ``Options`` (the provider-specific settings a config may carry, validated)
and, once the vendor's capabilities are built, its adapter class.
"""

import importlib
from types import ModuleType

KINDS: dict[str, tuple[str, str]] = {
    "openai": ("OpenAI", "providers.adapters.openai"),
    "anthropic": ("Anthropic", "providers.adapters.anthropic"),
    "google": ("Google Gemini", "providers.adapters.google"),
    "groq": ("Groq", "providers.adapters.groq"),
    "elevenlabs": ("ElevenLabs", "providers.adapters.elevenlabs"),
}

CHOICES = [(kind, label) for kind, (label, _module) in KINDS.items()]


def module(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind][1])
