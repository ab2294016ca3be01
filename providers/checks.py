"""System checks: production must be given its secrets; nothing is generated for it."""

from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError


def _dev_secret(filename: str) -> Path | None:
    """A development secret `make run` (DEBUG=1) generated in the data folder, if there is one.

    It is not read without DEBUG=1: a production server that found a stray ./data would otherwise
    run on development secrets without anyone choosing to. The errors point to it instead.
    """
    path = Path(settings.DATA_DIR) / filename
    return path if path.is_file() else None


def _shown(path: Path) -> str:
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return str(path)


def _stored_keys() -> int | None:
    """How many provider configs hold an encrypted key; None when the database cannot say (not migrated)."""
    from providers.models import ProviderConfig

    try:
        return ProviderConfig.objects.count()
    except DatabaseError:
        return None


def _dev_hint(path: Path) -> str:
    return (f"This looks like a development checkout: {_shown(path)} holds the secret `make run` generated. "
            "Run the command with DEBUG=1 (DEBUG=1 .venv/bin/python manage.py ...) to use it, as `make run` does. "
            "In production, set the variable instead.")


@register("qalby", Tags.security)
def check_secrets(app_configs=None, **kwargs):
    errors = []
    if getattr(settings, "SECRET_KEY_MISSING", False):
        dev = _dev_secret("django-secret-key")
        errors.append(
            Error(
                "SECRET_KEY is not set.",
                hint=_dev_hint(dev) if dev else
                "Set SECRET_KEY (or SECRET_KEY_FILE) to a long random string; only DEBUG=1 generates one.",
                id="qalby.E001",
            )
        )
    keys = settings.QALBY_ENCRYPTION_KEYS
    if not keys:
        errors.append(Error("QALBY_ENCRYPTION_KEYS is not set: provider API keys cannot be encrypted.",
                            hint=_encryption_hint(), id="qalby.E002"))
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


def _encryption_hint() -> str:
    dev = _dev_secret("encryption-key")
    if dev:
        return (_dev_hint(dev) + " Do not generate a new key for this checkout: the provider keys stored here "
                "were encrypted with that one, and a new key cannot read them.")
    stored = _stored_keys()
    if stored:
        return (f"{stored} provider config(s) in the database hold keys encrypted with the key(s) this server was "
                "set up with: set QALBY_ENCRYPTION_KEYS to those. A new key cannot decrypt them (it only "
                "encrypts what is saved after it).")
    return ("Set QALBY_ENCRYPTION_KEYS to one or more comma-separated Fernet keys, newest first "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())').")
