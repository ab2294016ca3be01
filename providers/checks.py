"""System checks: production must be given its secrets; nothing is generated for it."""

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, register


@register("qalby", Tags.security)
def check_secrets(app_configs=None, **kwargs):
    errors = []
    if getattr(settings, "SECRET_KEY_MISSING", False):
        errors.append(
            Error(
                "SECRET_KEY is not set.",
                hint="Set SECRET_KEY (or SECRET_KEY_FILE) to a long random string; only DEBUG=1 generates one.",
                id="qalby.E001",
            )
        )
    keys = settings.QALBY_ENCRYPTION_KEYS
    if not keys:
        errors.append(
            Error(
                "QALBY_ENCRYPTION_KEYS is not set: provider API keys cannot be encrypted.",
                hint="Set QALBY_ENCRYPTION_KEYS to one or more comma-separated Fernet keys, newest first "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())').",
                id="qalby.E002",
            )
        )
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            errors.append(
                Error(
                    f"QALBY_ENCRYPTION_KEYS entry {position} is not a valid Fernet key.",
                    hint="Each key is 32 url-safe base64-encoded bytes (44 characters).",
                    id="qalby.E003",
                )
            )
    return errors


@register("qalby")
def check_hedging(app_configs=None, **kwargs):
    # env.decimal bounds each value alone; how they relate is checked here.
    errors = []
    if settings.QALBY_HEDGE_MIN > settings.QALBY_HEDGE_MAX:
        errors.append(Error(f"QALBY_HEDGE_MIN ({settings.QALBY_HEDGE_MIN:g}) is more than QALBY_HEDGE_MAX "
                            f"({settings.QALBY_HEDGE_MAX:g}).", hint="Learned hedge delays lie between the two.",
                            id="qalby.E004"))
    if settings.QALBY_HEDGE_PERCENTILE > 100:
        errors.append(Error(f"QALBY_HEDGE_PERCENTILE ({settings.QALBY_HEDGE_PERCENTILE:g}) is more than 100.",
                            hint="A percentile of recent times to the first chunk, 1 to 100.", id="qalby.E005"))
    return errors
