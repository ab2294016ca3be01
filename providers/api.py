from typing import Annotated

from django.http import HttpResponse
from ninja import Path, Router, Status

from providers import selectors, services
from providers.auth import ClientKeyAuth
from providers.schemas import PROVIDER_UID, ProviderConfigIn, ProviderConfigOut

router = Router(tags=["providers"], auth=ClientKeyAuth("manage"))


@router.get("/configs", response=list[ProviderConfigOut])
async def list_configs(request):
    """Every provider config, with its API key masked (at most its last 4 characters)."""
    return [ProviderConfigOut.of(config) for config in await selectors.aprovider_config_list()]


@router.post("/config", response={200: ProviderConfigOut, 201: ProviderConfigOut})
async def upsert_config(request, payload: ProviderConfigIn):
    """Create the config `uid` (201) or replace it whole (200). The API key is encrypted at rest and never
    returned; `base_url` points the provider's SDK elsewhere (a proxy, a compatible server); `options` are
    the provider's config options (README: docs/providers.md). Takes effect on the next request, in
    every replica."""
    config, created = await services.aprovider_config_upsert(**payload.dict())
    return Status(201 if created else 200, ProviderConfigOut.of(config))


@router.delete("/config/{uid}", response={204: None})
async def delete_config(request, uid: Annotated[str, Path(pattern=PROVIDER_UID, max_length=64)]):
    """Delete the config `uid` (204); 404 if there is none, 409 while a route still names it."""
    await services.aprovider_config_delete(uid)
    return HttpResponse(status=204)
