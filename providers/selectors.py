"""Reads of provider configs (writes are in services.py)."""

from providers.models import ProviderConfig


async def aprovider_config_list() -> list[ProviderConfig]:
    return [config async for config in ProviderConfig.objects.order_by("uid")]
