"""Writes of routes: create or replace one whole (its entries included), delete one."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from providers import db, registry
from providers import exceptions as exc
from providers.models import ProviderConfig
from providers.routes import kinds
from providers.routes.models import Route, RouteEntry


def check_entry(route_kind: str, config: ProviderConfig, model: str, settings: dict[str, Any]) -> None:
    """An entry's provider must offer the route's kind and its settings must make a valid request;
    ValidationError otherwise (the admin shows it on the entry, the API as a 400)."""
    kind = kinds.get(route_kind)
    if kind is None:
        raise ValidationError(f"unknown route kind '{route_kind}'")
    if config.provider not in registry.offering(kind.capability):
        raise ValidationError(f"'{config.uid}' is {registry.config_of(config.provider)}, which cannot serve a "
                              f"{route_kind} route (the providers that can: {', '.join(registry.offering(kind.capability))})")
    try:
        kind.check(config.uid, model, settings)
    except ValueError as error:
        raise ValidationError(f"settings: {error}") from None


def bump(route: Route) -> None:
    """A new version, whatever changed (the route or only its entries)."""
    Route.objects.filter(pk=route.pk).update(version=F("version") + 1)


def route_upsert(*, name: str, kind: str, entries: list[dict[str, Any]], **fields: Any) -> tuple[Route, bool]:
    """Create the route ``name`` or replace it whole (its entries too); returns (route, created)."""
    with transaction.atomic():
        route = Route.objects.select_for_update().filter(name=name).first()
        created = route is None
        route = route or Route(name=name)
        route.kind = kind
        fields.pop("name", None)
        for field, value in fields.items():
            setattr(route, field, "" if value is None and field in ("hedge_after", "on_stream_failure") else value)
        route.clean_fields(exclude=["name"] if not created else None)
        route.clean()
        if not created:
            route.version += 1
        route.save()
        route.entries.all().delete()
        uids = {entry["provider_uid"] for entry in entries}
        configs = {config.uid: config for config in ProviderConfig.objects.filter(uid__in=uids)}
        for position, entry in enumerate(entries):
            config = configs.get(entry["provider_uid"])
            if config is None:
                raise exc.NotFound(f"entries.{position}: unknown provider_uid '{entry['provider_uid']}'")
            try:
                check_entry(kind, config, entry["model"], entry.get("settings") or {})
            except ValidationError as error:
                raise exc.InvalidInput(f"entries.{position}: {' '.join(error.messages)}") from None
            RouteEntry.objects.create(
                route=route, position=position, config=config, model=entry["model"],
                settings=entry.get("settings") or {}, first_chunk_timeout=entry.get("first_chunk_timeout"),
                idle_timeout=entry.get("idle_timeout"),
            )
    return route, created


def route_delete(name: str) -> None:
    deleted, _ = Route.objects.filter(name=name).delete()
    if not deleted:
        raise exc.NotFound(f"no route named '{name}'")


aroute_upsert = db.unit(route_upsert)
aroute_delete = db.unit(route_delete)
