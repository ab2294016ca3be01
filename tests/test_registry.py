"""Every registry row has what the rest of the project reads from it, so adding a vendor is checkable.

For each kind: its entry module's ``Options``, ``PROVIDER_OPTIONS`` (naming exactly the
capabilities its adapter implements), an ``Adapter`` built from a dummy config, its ``map_error``;
the row's SDK loggers silenced in settings and its key prefixes redacted; and the adapters folder
holds one entry per row beside the shared modules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from pydantic import ValidationError

from providers import exceptions as exc
from providers import registry
from providers.adapters.audio import Speech, Transcription
from providers.adapters.chat import Chat
from providers.adapters.errors import redact
from providers.adapters.options import ConfigSnapshot, ProviderOptions
from tests.security.test_provider_options import CLIENT_OPTIONS

PROTOCOLS = {"chat": Chat, "speech": Speech, "transcription": Transcription}
SHARED = {"__init__", "chat", "audio", "errors", "options", "languages", "sse", "transport"}

kinds = pytest.mark.parametrize("kind", list(registry.KINDS))


def dummy_adapter(kind: str):
    prefix = registry.KINDS[kind].key_prefixes[0]
    config = ConfigSnapshot(uid=f"dummy-{kind}", provider=kind, api_key=f"{prefix}dummy-0123456789",
                            base_url="http://127.0.0.1:9/", options={}, enabled=True, version="1")
    return registry.module(kind).Adapter(config)


def test_protocols_cover_every_capability():
    assert set(PROTOCOLS) == set(registry.CAPABILITIES)


@kinds
def test_options_class_is_provider_options_and_validates_an_empty_config(kind):
    options = registry.module(kind).Options
    assert issubclass(options, ProviderOptions)
    options.model_validate({})
    with pytest.raises(ValidationError):
        options.model_validate({"no_such_option": 1})


@kinds
def test_provider_options_name_exactly_the_capabilities_the_adapter_implements(kind):
    allowed = registry.module(kind).PROVIDER_OPTIONS
    adapter = dummy_adapter(kind)
    implemented = {name for name, protocol in PROTOCOLS.items() if isinstance(adapter, protocol)}
    assert implemented, f"{kind}'s adapter implements no capability"
    assert set(allowed) == implemented
    for capability, keys in allowed.items():
        assert isinstance(keys, frozenset) and all(isinstance(key, str) for key in keys), capability
        assert not keys & set(CLIENT_OPTIONS), f"{kind} {capability} lets clients set {keys & set(CLIENT_OPTIONS)}"
    assert [k for k in registry.CAPABILITIES if kind in registry.offering(k)] == sorted(
        implemented, key=registry.CAPABILITIES.index
    )


@kinds
def test_chat_adapters_say_which_attachments_they_take(kind):
    adapter = dummy_adapter(kind)
    if isinstance(adapter, Chat):
        assert adapter.accepted_mime_types and all("/" in t for t in adapter.accepted_mime_types)


@kinds
def test_map_error_types_transport_errors_and_lets_unknown_ones_through(kind):
    adapter = dummy_adapter(kind)
    timeout = adapter.map_error(httpx.ReadTimeout("slow"), "m")
    assert isinstance(timeout, exc.Timeout) and timeout.provider_uid == f"dummy-{kind}"
    broken = adapter.map_error(httpx.ConnectError("refused"), "m")
    assert isinstance(broken, exc.Unavailable) and "ConnectError" in str(broken) and broken.retryable
    assert adapter.map_error(ZeroDivisionError(), "m") is None


@kinds
def test_sdk_loggers_are_kept_at_warning(kind):
    loggers = registry.KINDS[kind].loggers
    assert loggers
    for name in loggers:
        assert settings.LOGGING["loggers"][name] == {"level": "WARNING"}
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


@kinds
def test_key_shaped_text_is_redacted(kind):
    for prefix in registry.KINDS[kind].key_prefixes:
        assert redact(f"bad key {prefix}AbCd1234-xyz given") == "bad key [redacted] given"


def test_the_adapters_folder_holds_one_entry_per_kind_beside_the_shared_modules():
    folder = Path(registry.__file__).parent / "adapters"
    entries = {p.stem for p in folder.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    vendors = {row.module.removeprefix("providers.adapters.") for row in registry.KINDS.values()}
    assert entries - SHARED == vendors
