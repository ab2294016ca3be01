"""The routes API (scope ``manage``): the same conventions as the provider configs API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpResponse
from ninja import Path, Router, Schema, Status
from pydantic import Field

from providers import db
from providers.auth import ClientKeyAuth
from providers.hedging import HedgeAfter
from providers.routes import services
from providers.routes.models import Route
from providers.schemas import MODEL, PROVIDER_UID, Strict

router = Router(tags=["routes"], auth=ClientKeyAuth("manage"))


class RouteEntryIn(Strict):
    provider_uid: str = Field(min_length=1, max_length=64, pattern=PROVIDER_UID)
    model: str = Field(min_length=1, max_length=200, pattern=MODEL)
    settings: dict[str, Any] = Field(
        default_factory=dict, description="This entry's defaults, as a request of the route's kind carries them: "
                                          "chat {gen_config}; speech {voice, output_format, gen_config}; "
                                          "transcription {language, gen_config}")
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600)
    idle_timeout: float | None = Field(None, gt=0, le=3600)


class RouteIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=PROVIDER_UID)
    kind: Literal["chat", "speech", "transcription"]
    strategy: Literal["sequential", "parallel"] = "sequential"
    timeout_per_request: float | None = Field(None, gt=0, le=3600)
    timeout_total: float | None = Field(None, gt=0, le=7200)
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600)
    idle_timeout: float | None = Field(None, gt=0, le=3600)
    hedge_after: HedgeAfter = Field(None, description="Seconds, auto or off")
    on_stream_failure: Literal["restart", "error"] | None = None
    enabled: bool = True
    entries: list[RouteEntryIn] = Field(min_length=1, max_length=10)


class RouteEntryOut(Schema):
    provider_uid: str
    model: str
    settings: dict[str, Any]
    first_chunk_timeout: float | None
    idle_timeout: float | None


class RouteOut(Schema):
    name: str
    kind: str
    strategy: str
    timeout_per_request: float | None
    timeout_total: float | None
    first_chunk_timeout: float | None
    idle_timeout: float | None
    hedge_after: str | None
    on_stream_failure: str | None
    enabled: bool
    version: int = Field(description="Grows with every change; request logs record the version that served them")
    entries: list[RouteEntryOut]
    created_at: datetime
    updated_at: datetime


def _out(route: Route) -> RouteOut:
    entries = [RouteEntryOut(provider_uid=e.config.uid, model=e.model, settings=e.settings,
                             first_chunk_timeout=e.first_chunk_timeout, idle_timeout=e.idle_timeout)
               for e in route.entries.select_related("config").order_by("position", "pk")]
    return RouteOut(
        name=route.name, kind=route.kind, strategy=route.strategy, timeout_per_request=route.timeout_per_request,
        timeout_total=route.timeout_total, first_chunk_timeout=route.first_chunk_timeout,
        idle_timeout=route.idle_timeout, hedge_after=route.hedge_after or None,
        on_stream_failure=route.on_stream_failure or None, enabled=route.enabled, version=route.version,
        entries=entries, created_at=route.created_at, updated_at=route.updated_at,
    )


@router.get("", response=list[RouteOut])
async def list_routes(request):
    """Every route: a named chain of provider configs and models that clients call by its name."""
    return await db.run(lambda: [_out(route) for route in Route.objects.order_by("name")])


@router.post("", response={200: RouteOut, 201: RouteOut})
async def upsert_route(request, payload: RouteIn):
    """Create the route `name` (201) or replace it whole (200): its kind, strategy, deadlines and entries,
    each checked against its provider config."""
    fields = payload.dict(exclude={"entries"})
    if fields["hedge_after"] is not None:
        fields["hedge_after"] = str(fields["hedge_after"])
    route, created = await services.aroute_upsert(**fields, entries=[e.dict() for e in payload.entries])
    stored = await db.run(lambda: _out(Route.objects.get(pk=route.pk)))  # the version as stored
    return Status(201 if created else 200, stored)


@router.delete("/{name}", response={204: None})
async def delete_route(request, name: Annotated[str, Path(pattern=PROVIDER_UID, max_length=64)]):
    """Delete the route `name` (204); 404 if there is none."""
    await services.aroute_delete(name)
    return HttpResponse(status=204)
