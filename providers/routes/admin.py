"""Routes in the admin (Administrators): entries inline, ordered by position, each checked against the
route's kind; a disabled provider config is flagged on its entry."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from providers.routes import services
from providers.routes.models import Route, RouteEntry


class RouteEntryInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kind = self.instance.kind
        kept = [form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        if not kept:
            raise ValidationError("A route needs at least one entry.")
        for form in kept:
            config, model = form.cleaned_data.get("config"), form.cleaned_data.get("model")
            if config is None or not model or not kind:
                continue
            try:
                services.check_entry(kind, config, model, form.cleaned_data.get("settings") or {})
            except ValidationError as error:
                form.add_error(None, error)


class RouteEntryInline(admin.TabularInline):
    model = RouteEntry
    formset = RouteEntryInlineFormSet
    extra = 1
    fields = ["position", "config", "config_state", "model", "settings", "first_chunk_timeout", "idle_timeout"]
    readonly_fields = ["config_state"]
    ordering = ["position", "pk"]

    @admin.display(description="config")
    def config_state(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return "enabled" if obj.config.enabled else "DISABLED: this entry fails as an attempt"


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    inlines = [RouteEntryInline]
    list_display = ["name", "kind", "strategy", "entry_list", "enabled", "version", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["version", "created_at", "updated_at"]
    fields = ["name", "kind", "strategy", "timeout_per_request", "timeout_total", "first_chunk_timeout",
              "idle_timeout", "hedge_after", "on_stream_failure", "enabled", "version", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("entries__config")

    @admin.display(description="entries")
    def entry_list(self, obj):
        return " → ".join(
            f"{e.config.uid}/{e.model}" + ("" if e.config.enabled else " (disabled)")
            for e in sorted(obj.entries.all(), key=lambda e: (e.position, e.pk))
        )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change:
            services.bump(form.instance)  # entries changed or not: one version per save
