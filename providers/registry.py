"""The one list of provider kinds: ``KINDS`` maps a config's ``provider`` to the row that says all
the rest of the project needs to know of that vendor, without importing its SDK.

A row names:
- ``label``: the vendor as the admin and the API's choices show it;
- ``module``: its adapter's entry module (``Options``, ``PROVIDER_OPTIONS``, ``Adapter``: see
  :mod:`providers.adapters`), imported on first use by :func:`module`;
- ``loggers``: the loggers its SDK writes to; settings.LOGGING keeps them at WARNING, since SDKs log
  request options at DEBUG;
- ``key_prefixes``: how its API keys begin; upstream text is scrubbed of anything shaped like one
  (:func:`providers.adapters.errors.redact`).

Adding a vendor: one adapter module, one row here, one test module. tests/test_registry.py checks
that every row's module has what the rest of the project reads from it.
"""

import importlib
from dataclasses import dataclass
from types import ModuleType

CAPABILITIES = ("chat", "speech", "transcription")


@dataclass(frozen=True)
class Kind:
    label: str
    module: str
    loggers: tuple[str, ...]
    key_prefixes: tuple[str, ...]


KINDS: dict[str, Kind] = {
    "openai": Kind("OpenAI", "providers.adapters.openai", ("openai",), ("sk-",)),
    "anthropic": Kind("Anthropic", "providers.adapters.anthropic", ("anthropic",), ("sk-ant-",)),
    "google": Kind("Google Gemini", "providers.adapters.google", ("google_genai",), ("AIza",)),
    "groq": Kind("Groq", "providers.adapters.groq", ("groq",), ("gsk_",)),
    "elevenlabs": Kind("ElevenLabs", "providers.adapters.elevenlabs", ("elevenlabs",), ("sk_", "xi-")),
}

CHOICES = [(kind, row.label) for kind, row in KINDS.items()]
SDK_LOGGERS = tuple(dict.fromkeys(name for row in KINDS.values() for name in row.loggers))
KEY_PREFIXES = tuple(dict.fromkeys(prefix for row in KINDS.values() for prefix in row.key_prefixes))


def config_of(kind: str) -> str:
    """``kind`` in a sentence: 'an Anthropic config', 'a Groq config'."""
    label = KINDS[kind].label
    return f"{'an' if label[0] in 'AEIOU' else 'a'} {label} config"


def module(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind].module)


def accepted_options(kind: str, capability: str) -> frozenset[str]:
    """The ``provider_options`` keys a ``kind`` config takes for ``capability`` (its allow-list)."""
    return module(kind).PROVIDER_OPTIONS.get(capability, frozenset())


def offering(capability: str) -> list[str]:
    """The kinds whose adapter offers ``capability`` (one of CAPABILITIES).

    An entry module's ``PROVIDER_OPTIONS`` names every capability its adapter implements, with an
    empty allow-list where clients may send nothing; tests/test_registry.py holds them to it.
    """
    return [kind for kind in KINDS if capability in module(kind).PROVIDER_OPTIONS]
