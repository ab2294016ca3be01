"""The auditors' admin: request logs, read-only for everyone, with filters, search, CSV and an overview."""

import csv
import functools
import itertools

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, resolve, reverse
from django.utils import timezone
from django.utils.html import format_html

from providers.requestlogs.middleware import RequestLogMiddleware
from providers.requestlogs.models import Attempt, RequestLog
from providers.requestlogs.overview import breaker_overview, outage_overview, request_overview


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


@functools.cache
def api_routes() -> tuple[str, ...]:
    """The API's route patterns as the log middleware records them (``POST /providers/config/{uid}``).

    Taken from the API's OpenAPI schema, found through the URL conf (providers may not import the
    site): it lists every operation a client can call, and leaves out the catch-alls that only
    answer 404. Only the paths the middleware logs. Their parameters are untyped (``{uid}``), so the
    schema writes them as the middleware does (a typed ``{int:id}`` would show there as ``{id}``).
    """
    api = resolve(reverse("api:openapi-json")).func.keywords["api"]
    return tuple(
        f"{method.upper()} {route}"
        for route, operations in api.get_openapi_schema()["paths"].items()
        if route.startswith(RequestLogMiddleware.LOGGED_PREFIXES)
        for method in operations
    )


class EndpointFilter(admin.SimpleListFilter):
    """The API's route patterns, and one choice for every request that matched none.

    The middleware stores the matched route pattern, never the client's path: it reads
    ``request.resolver_match.route``, a string Django has already made, so the hot path pays nothing
    and no column or migration is needed; a path no route takes is stored as ``<METHOD> unmatched``.
    The choices come from the URL conf, not from the rows: no ``SELECT DISTINCT`` over the table,
    and nothing a client sends becomes a choice. A choice is one equality on an indexed column.
    """

    title = "endpoint"
    parameter_name = "endpoint"
    UNMATCHED = "unmatched"

    def lookups(self, request, model_admin):
        return [(route, route) for route in api_routes()] + [(self.UNMATCHED, "unmatched (404, 405)")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value == self.UNMATCHED:  # no route, or a route's path with a method it does not take
            return queryset.exclude(endpoint__in=api_routes())
        if value not in api_routes():
            raise IncorrectLookupParameters(f"no such endpoint: {value!r}")
        return queryset.filter(endpoint=value)


SHORT_ID = 8  # characters of a request id the list shows; the detail page has it whole
_ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def short_request_id(request_id: str) -> str:
    """The end of a request id: ours are a per-process random prefix (the same for every request of
    a server process) then a counter, so the counter's end is what tells two requests apart."""
    return request_id if len(request_id) <= SHORT_ID + 2 else _ELLIPSIS + request_id[-SHORT_ID:]


FIELD_FILTERS = ["created_at", "status", "outcome", "mode", "route", "provider_uid", "model", "client_key_name"]


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnly, admin.ModelAdmin):
    # Narrow enough for a 1,366 px screen with the filters beside it (tests/admin/test_admin_browser.py).
    list_display = ["time", "short_id", "endpoint_cell", "status", "outcome", "route", "provider", "model",
                    "latency", "attempts", "client_key"]
    list_display_links = ["short_id"]
    list_filter = ["created_at", EndpointFilter, *FIELD_FILTERS[1:]]
    # The lookups the filters and the date drill-down make. Django allows any lookup on a filtered
    # field, and a bad regex or range only fails when the query runs: a server error, mid-stream for CSV.
    FILTER_LOOKUPS = frozenset(
        [f"{name}{exact}" for name in FIELD_FILTERS for exact in ("", "__exact")]
        + [f"created_at__{part}" for part in ("gte", "lt", "year", "month", "day")]
        + [EndpointFilter.parameter_name]  # its value is a choice, never a lookup
    )
    search_fields = ["request_id"]  # matched in get_search_results
    search_help_text = f"A request id, whole or its last {SHORT_ID} characters as the list shows them."
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    show_full_result_count = False  # a count over millions of rows on every page is not worth it
    change_list_template = "admin/providers/requestlog/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RequestLog._meta.fields]

    @admin.display(description="time", ordering="created_at")
    def time(self, obj):
        local = timezone.localtime(obj.created_at)
        return format_html('<span title="{}">{}</span>', local.isoformat(timespec="milliseconds"),
                           f"{local:%b} {local.day} {local:%H:%M:%S}")

    @admin.display(description="request id", ordering="request_id")
    def short_id(self, obj):
        return format_html('<span class="qalby-id" title="{}">{}</span>', obj.request_id,
                           short_request_id(obj.request_id))

    @admin.display(description="endpoint", ordering="endpoint")
    def endpoint_cell(self, obj):
        method, _, route = obj.endpoint.partition(" ")
        return format_html('<span class="qalby-method">{}</span> {}', method, route)

    @admin.display(description="provider", ordering="provider_uid")
    def provider(self, obj):
        return obj.provider_uid or None

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return None if obj.latency_ms is None else f"{obj.latency_ms:,} ms"

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj):
        return obj.attempt_count

    @admin.display(description="client key", ordering="client_key_name")
    def client_key(self, obj):
        return obj.client_key_name or None

    def get_search_results(self, request, queryset, search_term):
        """A whole request id (one look-up in the index), or the end the list shows."""
        term = search_term.strip().removeprefix(_ELLIPSIS).removeprefix("...")  # as copied from the list
        if not term:
            return queryset, False
        if len(term) <= SHORT_ID + 2:  # as short as the list shows: the end of an id, or a short id
            return queryset.filter(Q(request_id=term) | Q(request_id__endswith=term)), False
        return queryset.filter(request_id=term), False

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
            "outages": outage_overview(hours),
        }
        return TemplateResponse(request, "admin/providers/requestlog/overview.html", context)


def _csv_lines(writer, rows, batch: int = 1000):
    # Sent in batches of rows: the server reads each piece with a thread hop (servers.async_body).
    yield writer.writerow(CSV_FIELDS)
    while lines := [writer.writerow(map(_as_text, row)) for row in itertools.islice(rows, batch)]:
        yield "".join(lines)
