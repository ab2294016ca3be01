from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from pydantic import ValidationError as PydanticValidationError

from providers import registry
from providers.fields import EncryptedTextField

# Re-exported: the request log tables live with the request logs, and migrations and callers name them here.
from providers.requestlogs.models import Attempt, DatabaseOutage, RequestLog  # noqa: F401
from providers.routes.models import Route, RouteEntry  # noqa: F401

validate_http_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(map(_holds_nul, value))


def reject_nul(value) -> None:
    """No NUL character, in text or anywhere in JSON: nobody means one, and PostgreSQL stores none."""
    if _holds_nul(value):
        raise ValidationError("must not contain NUL characters")

SCOPE_USE = "use"
SCOPE_MANAGE = "manage"
SCOPES = (SCOPE_USE, SCOPE_MANAGE)


def mask_secret(secret: str) -> str:
    """Show at most a vendor-style prefix and the last 4 characters, and less of a short secret."""
    if len(secret) >= 20:
        return f"{secret[:3]}…{secret[-4:]}"
    if len(secret) >= 12:
        return f"…{secret[-4:]}"
    return "…"


def validate_options(kind: str, options) -> dict:
    """The options validated against the kind's model; raises django ValidationError naming the option."""
    if not isinstance(options, dict):
        raise ValidationError({"options": "must be a JSON object"})
    if kind not in registry.KINDS:
        return options
    try:
        registry.module(kind).Options.model_validate(options)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise ValidationError({"options": f"{where}: {first['msg']}"}) from None
    return options


class ProviderConfig(models.Model):
    """One provider account: which vendor, which key, where. The key is encrypted at rest."""

    uid = models.SlugField(max_length=64, unique=True, help_text="Name clients use to pick this provider")
    provider = models.CharField(max_length=32, choices=registry.CHOICES)
    api_key = EncryptedTextField(validators=[reject_nul], help_text="Stored encrypted; never shown again after saving")
    base_url = models.CharField(max_length=500, blank=True, default="", validators=[validate_http_url, reject_nul])
    options = models.JSONField(default=dict, blank=True, validators=[reject_nul])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["uid"]
        verbose_name = "provider configuration"

    def __str__(self) -> str:
        return self.uid

    def __repr__(self) -> str:
        return f"<ProviderConfig {self.uid} ({self.provider})>"

    def clean(self) -> None:
        validate_options(self.provider, self.options)

    @property
    def masked_key(self) -> str:
        if getattr(self.api_key, "undecryptable", False):
            return "(cannot be decrypted: check QALBY_ENCRYPTION_KEYS)"
        return mask_secret(self.api_key or "")


class ClientKey(models.Model):
    """A key an app backend presents as ``Authorization: Bearer``. Only a hash of the secret is kept."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    routes = models.JSONField(default=list, blank=True,
                              help_text="Route names this key may use; empty: every route")
    direct = models.BooleanField("may name provider configs", default=True,
                                 help_text="Whether requests may name a provider_uid directly instead of a route")
    enabled = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "client API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    def clean(self) -> None:
        if not isinstance(self.scopes, list) or not self.scopes or any(s not in SCOPES for s in self.scopes):
            raise ValidationError({"scopes": f"choose one or more of: {', '.join(SCOPES)}"})
        if not isinstance(self.routes, list) or any(not isinstance(r, str) or not r for r in self.routes):
            raise ValidationError({"routes": "a list of route names"})
