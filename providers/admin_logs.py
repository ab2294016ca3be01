"""The auditors' admin: request logs, read-only for everyone, with filters, search, CSV and an overview."""

import csv
import itertools

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import StreamingHttpResponse
from django.urls import path

from providers import selectors
from providers.models import Attempt, RequestLog


class ReadOnly:
    """Logs are append-only: nobody adds, changes or deletes them here, whatever their permissions."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AttemptInline(ReadOnly, admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ["order", "provider_uid", "model", "outcome", "upstream_status", "error_type", "error", "retries",
              "latency_ms", "first_chunk_ms"]
    readonly_fields = fields


class _Echo:
    def write(self, value):
        return value


CSV_FIELDS = ["request_id", "created_at", "client_key_name", "client_key_prefix", "endpoint", "mode", "status",
              "outcome", "provider_uid", "model", "latency_ms", "first_chunk_ms", "attempt_count", "fallbacks",
              "input_tokens", "output_tokens", "characters", "audio_bytes", "audio_seconds", "error"]


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["created_at", "request_id", "endpoint", "status", "outcome", "provider_uid", "model",
                    "latency_ms", "attempt_count", "client_key_name"]
    list_filter = ["created_at", "endpoint", "status", "outcome", "mode", "provider_uid", "model", "client_key_name"]
    search_fields = ["=request_id"]
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    show_full_result_count = False  # a count over millions of rows on every page is not worth it
    change_list_template = "admin/providers/requestlog/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RequestLog._meta.fields]

    def get_urls(self):
        extra = [
            path("export.csv", self.admin_site.admin_view(self.export_csv), name="providers_requestlog_export"),
            path("overview/", self.admin_site.admin_view(self.overview), name="providers_requestlog_overview"),
        ]
        return extra + super().get_urls()

    def _filtered(self, request):
        """The queryset the change list shows for these filters and this search."""
        changelist = self.get_changelist_instance(request)
        assert isinstance(changelist, ChangeList)
        return changelist.get_queryset(request)

    def export_csv(self, request):
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        rows = self._filtered(request).values_list(*CSV_FIELDS).iterator(chunk_size=2000)
        response = StreamingHttpResponse(_csv_lines(csv.writer(_Echo()), rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="request-logs.csv"'
        return response

    def overview(self, request):
        from django.template.response import TemplateResponse

        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        hours = min(max(int(request.GET.get("hours", 24) or 24), 1), 24 * 31)
        context = {
            **self.admin_site.each_context(request),
            "title": "Request overview",
            "opts": self.model._meta,
            "hours": hours,
            **selectors.request_overview(hours),
        }
        return TemplateResponse(request, "admin/providers/requestlog/overview.html", context)


def _csv_lines(writer, rows, batch: int = 1000):
    # Sent in batches of rows: the server reads each piece with a thread hop (servers.async_body).
    yield writer.writerow(CSV_FIELDS)
    while lines := [writer.writerow(row) for row in itertools.islice(rows, batch)]:
        yield "".join(lines)
