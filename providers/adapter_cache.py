"""Adapters (and so SDK clients, with their warm connection pools) cached per provider config.

The hot path asks ``await adapters.get(uid)``. A config saved or deleted in this process drops
its entry at once (model signal). Other replicas' changes are seen when an entry is older than
QALBY_CONFIG_TTL seconds: one query then re-reads the row, and the adapter is rebuilt only if the
row changed. So a request costs no query and no client construction while nothing changes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from providers import db, outage, registry
from providers.adapters.options import ConfigSnapshot
from providers.exceptions import DatabaseUnavailable, UnknownProviderUid
from providers.models import ProviderConfig


@dataclass
class _Entry:
    snapshot: ConfigSnapshot
    adapter: Any
    checked_at: float


def snapshot_of(config: ProviderConfig) -> ConfigSnapshot:
    return ConfigSnapshot(
        uid=config.uid,
        provider=config.provider,
        api_key=config.api_key,
        base_url=config.base_url,
        options=dict(config.options or {}),
        enabled=config.enabled,
        version=f"{config.pk}:{config.updated_at.isoformat()}",
    )



class AdapterCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def invalidate(self, uid: str | None = None) -> None:
        if uid is None:
            self._entries.clear()
        else:
            self._entries.pop(uid, None)

    def cached(self, uid: str) -> ConfigSnapshot | None:
        """The config as last read, if it is in the cache: no query (labels, breaker limits)."""
        entry = self._entries.get(uid)
        return entry.snapshot if entry is not None else None

    async def get(self, uid: str) -> tuple[ConfigSnapshot, Any]:
        """(snapshot, adapter) for the config ``uid``; NotFound when there is none."""
        entry = self._entries.get(uid)
        if entry is not None and time.monotonic() - entry.checked_at < settings.QALBY_CONFIG_TTL:
            return entry.snapshot, entry.adapter
        if entry is not None and outage.down() and outage.stands_in(entry.checked_at, "provider_config"):
            return entry.snapshot, entry.adapter  # no wait for a database that just failed
        # One reader per uid: a burst on a cold cache makes one query and one client, not hundreds.
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            entry = self._entries.get(uid)
            if entry is not None and time.monotonic() - entry.checked_at < settings.QALBY_CONFIG_TTL:
                return entry.snapshot, entry.adapter
            try:
                config = await db.run(lambda: ProviderConfig.objects.filter(uid=uid).first())
            except DatabaseUnavailable:
                if entry is not None and outage.stands_in(entry.checked_at, "provider_config"):
                    return entry.snapshot, entry.adapter
                self._locks.pop(uid, None)
                raise outage.unavailable(f"the database is unavailable and this server has not read the provider "
                                         f"config '{uid}' yet; retry in a few seconds") from None
            if config is None:
                self._entries.pop(uid, None)
                self._locks.pop(uid, None)  # uids come from clients: keep no state for unknown ones
                configured = await db.run(lambda: list(
                    ProviderConfig.objects.order_by("uid").values_list("uid", flat=True)[:UnknownProviderUid.LISTED + 1]))
                raise UnknownProviderUid(uid, configured)
            snapshot = snapshot_of(config)
            if entry is not None and entry.snapshot.version == snapshot.version:
                entry.checked_at = time.monotonic()
                return entry.snapshot, entry.adapter
            # The replaced adapter is not closed here: requests in flight may still be using it.
            # No adapter for a key this server cannot decrypt: using the config fails as an attempt.
            unusable = getattr(snapshot.api_key, "undecryptable", False)
            adapter = None if unusable else registry.module(snapshot.provider).Adapter(snapshot)
            self._entries[uid] = _Entry(snapshot, adapter, time.monotonic())
            return snapshot, adapter


adapters = AdapterCache()
outage.cache(lambda: len(adapters._entries))
