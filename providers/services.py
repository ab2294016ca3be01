"""Writes. Thin functions named <entity>_<action>; async twins are prefixed with ``a``."""

from datetime import datetime

from django.db import transaction
from django.db.models import ProtectedError

from providers import db
from providers.auth import make_token
from providers.exceptions import Conflict, NotFound
from providers.fields import DecryptionFailed
from providers.models import ClientKey, ProviderConfig, Route


def provider_config_upsert(
    *,
    uid: str,
    provider: str,
    api_key: str,
    base_url: str | None = None,
    options: dict | None = None,
    enabled: bool = True,
) -> tuple[ProviderConfig, bool]:
    """Create the config of ``uid`` or replace it whole; returns (config, created)."""
    with transaction.atomic():
        config = ProviderConfig.objects.select_for_update().filter(uid=uid).first()
        created = config is None
        config = config or ProviderConfig(uid=uid)
        config.provider = provider
        config.api_key = api_key
        config.base_url = base_url or ""
        config.options = options or {}
        config.enabled = enabled
        # Field and option validation only: uniqueness is what the lookup above guarantees.
        config.clean_fields()
        config.clean()
        config.save()
    return config, created


aprovider_config_upsert = db.unit(provider_config_upsert)


def provider_config_delete(uid: str) -> None:
    """Delete the config ``uid``; Conflict while routes name it (their entries keep it: PROTECT)."""
    try:
        deleted, _ = ProviderConfig.objects.filter(uid=uid).delete()
    except ProtectedError:
        routes = sorted(set(Route.objects.filter(entries__config__uid=uid).values_list("name", flat=True)))
        raise Conflict(f"provider config '{uid}' is used by the routes {', '.join(routes)}: "
                           "take it out of them first") from None
    if not deleted:
        raise NotFound(f"no provider config with uid '{uid}'")


aprovider_config_delete = db.unit(provider_config_delete)


def client_key_create(*, name: str, scopes: list[str], expires_at: datetime | None = None,
                      routes: list[str] | None = None, direct: bool = True) -> tuple[ClientKey, str]:
    """A new client key and its secret token, which is returned once and never stored. ``routes``: the
    only routes it may use (None: all); ``direct``: whether it may name provider configs."""
    token, prefix, digest = make_token()
    key = ClientKey(name=name, prefix=prefix, secret_hash=digest, scopes=sorted(set(scopes)), expires_at=expires_at,
                    routes=sorted(set(routes or ())), direct=direct)
    key.full_clean()
    key.save()
    return key, token


def encryption_keys_rotate() -> int:
    """Re-encrypt every stored provider key with the newest encryption key; returns how many.

    Reading decrypts with whichever configured key matches; writing encrypts with the newest.
    A row that no configured key decrypts stops the rotation (DecryptionFailed) with nothing changed.
    """
    count = 0
    with transaction.atomic():
        for pk, uid, plaintext in ProviderConfig.objects.select_for_update().values_list("pk", "uid", "api_key"):
            if getattr(plaintext, "undecryptable", False):
                raise DecryptionFailed(f"the key of provider config '{uid}' cannot be decrypted with the configured keys")
            ProviderConfig.objects.filter(pk=pk).update(api_key=plaintext)
            count += 1
    return count
