import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("qalby")


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from providers import checks, signals  # noqa: F401  (registration)
        from providers.requestlogs import tracing

        tracing.setup()

        for path in settings.GENERATED_DEV_SECRETS:
            logger.warning("development secret generated and stored in %s; set it in the environment for production", path)
