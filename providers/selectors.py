"""Reads."""

from providers.models import ProviderConfig


async def aprovider_config_list() -> list[ProviderConfig]:
    return [config async for config in ProviderConfig.objects.order_by("uid")]
