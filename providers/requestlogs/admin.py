"""The auditors' admin: request logs, read-only for everyone, with filters, search, CSV and an overview."""

import csv
import itertools

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from providers.requestlogs.models import Attempt, RequestLog
from providers.requestlogs.overview import breaker_overview, request_overview


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
              "latency_ms", "first_chunk_ms", "skipped_events"]
    readonly_fields = fields


class _Echo:
    def write(self, value):
        return value


CSV_FIELDS = ["request_id", "created_at", "client_key_name", "client_key_prefix", "endpoint", "mode", "status",
              "outcome", "route", "route_version", "provider_uid", "model", "latency_ms", "first_chunk_ms",
              "attempt_count", "fallbacks",
              "input_tokens", "output_tokens", "characters", "audio_bytes", "audio_seconds", "error"]


# A cell a spreadsheet would read as a formula (OWASP, CSV injection); clients choose some of these values.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_HOURS = 24 * 31


def _as_text(value):
    """A text cell that could start a formula, quoted so a spreadsheet shows it as text; numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def _bad_request(detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=400)


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["created_at", "request_id", "endpoint", "status", "outcome", "route", "provider_uid", "model",
                    "latency_ms", "attempt_count", "client_key_name"]
    list_filter = ["created_at", "endpoint", "status", "outcome", "mode", "route", "provider_uid", "model",
                   "client_key_name"]
    # The lookups the filters and the date drill-down make. Django allows any lookup on a filtered
    # field, and a bad regex or range only fails when the query runs: a server error, mid-stream for CSV.
    FILTER_LOOKUPS = frozenset(
        [f"{name}{exact}" for name in list_filter for exact in ("", "__exact")]
        + [f"created_at__{part}" for part in ("gte", "lt", "year", "month", "day")]
    )
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

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in self.FILTER_LOOKUPS and super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except DisallowedModelAdminLookup as exc:
            return _bad_request(str(exc))

    def _filtered(self, request):
        """The queryset the change list shows for these filters and this search, on every page at once."""
        # The list's "Export CSV" link carries its page number, which means nothing for the export.
        request.GET = request.GET.copy()
        request.GET.pop(PAGE_VAR, None)
        changelist = self.get_changelist_instance(request)
        assert isinstance(changelist, ChangeList)
        return changelist.get_queryset(request)

    def export_csv(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            logs = self._filtered(request)
        except (IncorrectLookupParameters, DisallowedModelAdminLookup) as exc:
            return _bad_request(f"invalid filter: {exc}")
        rows = logs.values_list(*CSV_FIELDS).iterator(chunk_size=2000)
        response = StreamingHttpResponse(_csv_lines(csv.writer(_Echo()), rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="request-logs.csv"'
        return response

    def overview(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            hours = int(request.GET.get("hours") or 24)
        except ValueError:
            return _bad_request(f"hours must be a whole number of hours (1 to {MAX_HOURS})")
        hours = min(max(hours, 1), MAX_HOURS)
        context = {
            **self.admin_site.each_context(request),
            "title": "Request overview",
            "opts": self.model._meta,
            "hours": hours,
            **request_overview(hours),
            "breakers": breaker_overview(),
        }
        return TemplateResponse(request, "admin/providers/requestlog/overview.html", context)


def _csv_lines(writer, rows, batch: int = 1000):
    # Sent in batches of rows: the server reads each piece with a thread hop (servers.async_body).
    yield writer.writerow(CSV_FIELDS)
    while lines := [writer.writerow(map(_as_text, row)) for row in itertools.islice(rows, batch)]:
        yield "".join(lines)
