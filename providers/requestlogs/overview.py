"""The auditors' overview: requests, errors, fallbacks and latency per hour and per provider, with charts."""

from datetime import timedelta

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from providers.requestlogs import charts
from providers.requestlogs.models import Attempt, DatabaseOutage, RequestLog


def breaker_overview() -> list[dict]:
    """Circuit breakers not closed now (as this replica sees them: shared through Redis when it is set)."""
    from providers.breaker import breaker
    from providers.models import ProviderConfig

    uids = list(ProviderConfig.objects.order_by("uid").values_list("uid", flat=True))
    return [{"provider_uid": uid, "model": model, "state": state, "seconds_left": round(left)}
            for uid, states in breaker.states(uids).items() for model, state, left in states]


# Who a request that did not serve is down to, from what its row records. The status already says
# it: qalby_site/api.py gives a 4xx only for what the client can fix (its input, its key, a name that
# does not exist, a body too large; a provider refusing the input itself is a 400 too, BadRequest),
# and a 5xx for what it cannot (upstream errors, timeouts, our own key refused upstream, a provider
# disabled, our own faults). The exception is 429: every attempt rate limited upstream. Before any
# attempt it would be a limit of ours on the client; there is none yet.
UPSTREAM_429 = Q(status=429, attempt_count__gt=0)
CLIENT_ERROR = Q(status__gte=400, status__lt=500) & ~UPSTREAM_429
PROVIDER_FAILURE = Q(status__gte=500) | UPSTREAM_429 | Q(status__lt=400, outcome="error")  # a stream that broke
CANCELLED = Q(status__lt=400, outcome="cancelled")  # the client left mid-stream (or the server stopped)
# Attempts a provider ended by refusing the input (providers/exceptions.py kinds): not its failure.
REFUSED_INPUT = ["BadRequest", "Unsupported", "content_policy"]


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def request_overview(hours: int) -> dict:
    """Counts per hour and per provider over the last ``hours``, for the auditors' overview page."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = now - timedelta(hours=hours)
    logs = RequestLog.objects.filter(created_at__gte=since)
    per_hour = {
        row["hour"]: row
        for row in logs.annotate(hour=TruncHour("created_at")).values("hour").annotate(
            total=Count("id"), client=Count("id", filter=CLIENT_ERROR), provider=Count("id", filter=PROVIDER_FAILURE),
            cancelled=Count("id", filter=CANCELLED), fallbacks=Count("id", filter=Q(fallbacks__gt=0)),
        )
    }
    slots = [since + timedelta(hours=i) for i in range(hours)]
    labels = [slot.strftime("%d %H:00") for slot in slots]
    hourly = {name: [per_hour.get(slot, {}).get(name, 0) for slot in slots]
              for name in ("total", "client", "provider", "cancelled", "fallbacks")}
    served = [t - c - p - x for t, c, p, x in
              zip(hourly["total"], hourly["client"], hourly["provider"], hourly["cancelled"], strict=True)]

    latency_rows = (
        Attempt.objects.filter(request_log__created_at__gte=since, outcome="ok")
        .annotate(hour=TruncHour("request_log__created_at"))
        .values("provider_uid", "hour")
        .annotate(avg=Avg("latency_ms"))
    )
    latency: dict[str, dict] = {}
    for row in latency_rows:
        latency.setdefault(row["provider_uid"], {})[row["hour"]] = row["avg"]
    series = {uid: [round(values[s]) if values.get(s) is not None else None for s in slots]
              for uid, values in sorted(latency.items())}

    providers = list(
        Attempt.objects.filter(request_log__created_at__gte=since)
        .values("provider_uid")
        .annotate(
            attempts=Count("id"),
            ok=Count("id", filter=Q(outcome="ok")),
            failed=Count("id", filter=Q(outcome__in=["error", "timeout"]) & ~Q(error_type__in=REFUSED_INPUT)),
            refused=Count("id", filter=Q(outcome="error", error_type__in=REFUSED_INPUT)),
            cancelled=Count("id", filter=Q(outcome="cancelled")),
            skipped=Count("id", filter=Q(outcome="skipped")),
            avg_latency=Avg("latency_ms", filter=Q(outcome="ok")),
        )
        .order_by("provider_uid")
    )
    requests, client, provider = sum(hourly["total"]), sum(hourly["client"]), sum(hourly["provider"])
    rates = [(name, [_percent(part, whole) for part, whole in zip(hourly[key], hourly["total"], strict=True)], color)
             for name, key, color in (("provider failures %", "provider", charts.FAILED),
                                      ("client errors %", "client", charts.CLIENT))]
    return {
        "totals": {
            "requests": requests,
            "served": sum(served),
            "client_errors": client,
            "provider_failures": provider,
            "cancelled": sum(hourly["cancelled"]),
            "provider_failure_rate": _percent(provider, requests),
            "fallbacks": sum(hourly["fallbacks"]),
        },
        "providers": providers,
        "charts": {
            "requests": charts.bars(labels, [("served", served, charts.SERVED),
                                             ("client errors", hourly["client"], charts.CLIENT),
                                             ("provider failures", hourly["provider"], charts.FAILED),
                                             ("cancelled", hourly["cancelled"], charts.QUIET)],
                                    title="Requests per hour"),
            "error_rate": charts.lines(labels, rates, title="Failures per hour (% of requests)"),
            "fallbacks": charts.bars(labels, [("fallbacks", hourly["fallbacks"])], title="Fallbacks taken per hour"),
            "latency": charts.lines(labels, list(series.items()), title="Average latency per provider (ms)"),
        },
    }


def outage_overview(hours: int) -> list[dict]:
    """The database outages the server processes lived through in the period (they record each one
    when the database is back), newest first."""
    since = timezone.now() - timedelta(hours=hours)
    return [{"replica": o.replica, "began_at": o.began_at, "seconds": round(o.seconds, 1), "stale_reads": o.stale_reads}
            for o in DatabaseOutage.objects.filter(ended_at__gte=since)[:50]]
