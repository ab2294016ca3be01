"""Keep in-process caches honest: a change to a client key or a provider config clears its entry."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers import auth
from providers.clients import adapters
from providers.models import ClientKey, ProviderConfig


@receiver(post_save, sender=ClientKey)
@receiver(post_delete, sender=ClientKey)
def client_key_changed(**kwargs):
    auth.clear_cache()


@receiver(post_save, sender=ProviderConfig)
@receiver(post_delete, sender=ProviderConfig)
def provider_config_changed(instance, **kwargs):
    adapters.invalidate(instance.uid)
