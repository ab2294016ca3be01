"""Keep caches honest: a change to a client key or a provider config clears its entry here and,
through Redis, on every other replica."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers import auth, invalidation
from providers.adapter_cache import adapters
from providers.models import ClientKey, ProviderConfig, Route, RouteEntry
from providers.routes.cache import routes


@receiver(post_save, sender=ClientKey)
@receiver(post_delete, sender=ClientKey)
def client_key_changed(instance, **kwargs):
    auth.clear_cache()
    # Again after commit: a request of this process may have re-read the old row in between. And
    # published after commit, or another replica could re-read the row before the change is visible.
    transaction.on_commit(auth.clear_cache)
    transaction.on_commit(lambda: invalidation.publish("clientkey", instance.prefix))


@receiver(post_save, sender=ProviderConfig)
@receiver(post_delete, sender=ProviderConfig)
def provider_config_changed(instance, **kwargs):
    adapters.invalidate(instance.uid)
    transaction.on_commit(lambda: invalidation.publish("config", instance.uid))


@receiver(post_save, sender=Route)
@receiver(post_delete, sender=Route)
def route_changed(instance, **kwargs):
    routes.invalidate(instance.name)
    transaction.on_commit(lambda: routes.invalidate(instance.name))
    transaction.on_commit(lambda: invalidation.publish("route", instance.name))


@receiver(post_save, sender=RouteEntry)
@receiver(post_delete, sender=RouteEntry)
def route_entry_changed(instance, **kwargs):
    name = Route.objects.filter(pk=instance.route_id).values_list("name", flat=True).first()
    if name:
        route_changed(Route(name=name))


@receiver(post_save, sender=ProviderConfig)
@receiver(post_delete, sender=ProviderConfig)
def routes_of_config_changed(instance, **kwargs):
    # A route's snapshot names its entries' config uids: a renamed or removed config changes it.
    routes.invalidate()
