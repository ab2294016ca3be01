from django import forms
from django.contrib import admin, messages

from providers import breaker
from providers.auth import make_token
from providers.models import SCOPES, ClientKey, ProviderConfig


class ProviderConfigForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back into the page. On a config that has one, the
    # page shows it masked in a row of its own ("Stored API key"), so this one is the new key.
    api_key = forms.CharField(
        label="New API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the stored key. A new key is stored encrypted and never shown again.",
    )

    class Meta:
        model = ProviderConfig
        fields = ["uid", "provider", "api_key", "base_url", "options", "enabled"]
        labels = {"uid": "UID", "base_url": "Base URL"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("api_key", None)
        if not self.instance.pk:
            self.fields["api_key"].required = True
            self.fields["api_key"].label = "API key"
            self.fields["api_key"].help_text = "Stored encrypted and never shown again."

    def clean_api_key(self):
        value = self.cleaned_data.get("api_key")
        if not value and self.instance.pk:
            stored = ProviderConfig.objects.only("api_key").get(pk=self.instance.pk).api_key
            if getattr(stored, "undecryptable", False):
                raise forms.ValidationError("The stored key cannot be decrypted with this server's keys: enter it again.")
            return stored
        return value


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigForm
    list_display = ["uid", "provider", "masked_key", "base_url", "enabled", "breaker_state", "updated_at"]
    list_filter = ["provider", "enabled"]
    search_fields = ["uid", "base_url"]
    readonly_fields = ["masked_key", "stored_key", "created_at", "updated_at"]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # One look-up (one Redis round trip) for the page, not one per row.
        self._breakers = breaker.breaker.states([config.uid for config in changelist.result_list])
        return changelist

    @admin.display(description="circuit breaker")
    def breaker_state(self, obj):
        return breaker.describe(getattr(self, "_breakers", {}).get(obj.uid, []))

    @admin.display(description="API key")
    def masked_key(self, obj):
        return obj.masked_key if obj.pk else "-"

    @admin.display(description="Stored API key")
    def stored_key(self, obj):
        """The change page's masked key, in the row above the input for a new one."""
        return obj.masked_key

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["uid", "provider", "api_key", "base_url", "options", "enabled"]
        return ["uid", "provider", "stored_key", "api_key", "base_url", "options", "enabled", "created_at", "updated_at"]


class ClientKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="use: agent and audio endpoints; manage: provider configuration endpoints",
    )

    class Meta:
        model = ClientKey
        fields = ["name", "scopes", "routes", "direct", "enabled", "expires_at"]


@admin.register(ClientKey)
class ClientKeyAdmin(admin.ModelAdmin):
    form = ClientKeyForm
    list_display = ["name", "prefix", "scope_list", "route_list", "direct", "enabled", "expires_at", "last_used_at",
                    "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "last_used_at", "created_at"]

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="routes")
    def route_list(self, obj):
        return ", ".join(obj.routes) or "all"

    def save_model(self, request, obj, form, change):
        if not change:
            token, obj.prefix, obj.secret_hash = make_token()
            super().save_model(request, obj, form, change)
            # Shown once: only a hash is stored, so the secret cannot be recovered later.
            messages.warning(request, f"New API key for {obj.name}: {token} — copy it now, it will not be shown again.")
            return
        super().save_model(request, obj, form, change)


# The request log admin lives with the request logs; importing it registers it.
from providers.requestlogs import admin as requestlogs_admin  # noqa: E402,F401
from providers.routes import admin as routes_admin  # noqa: E402,F401
