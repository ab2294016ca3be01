"""Keep in-process caches honest: a change to a client key clears the verified-key cache."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers import auth
from providers.models import ClientKey


@receiver(post_save, sender=ClientKey)
@receiver(post_delete, sender=ClientKey)
def client_key_changed(**kwargs):
    auth.clear_cache()
