"""Reads of provider configs (writes are in services.py)."""

from providers import db
from providers.models import ProviderConfig


async def aprovider_config_list() -> list[ProviderConfig]:
    return await db.run(lambda: list(ProviderConfig.objects.order_by("uid")))
