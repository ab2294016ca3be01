"""The auditors' overview: requests, errors, fallbacks and latency per hour and per provider, with charts."""

from datetime import timedelta

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from providers.requestlogs import charts
from providers.requestlogs.models import Attempt, RequestLog


def breaker_overview() -> list[dict]:
    """Circuit breakers not closed now (as this replica sees them: shared through Redis when it is set)."""
    from providers.breaker import breaker
    from providers.models import ProviderConfig

    uids = list(ProviderConfig.objects.order_by("uid").values_list("uid", flat=True))
    return [{"provider_uid": uid, "model": model, "state": state, "seconds_left": round(left)}
            for uid, states in breaker.states(uids).items() for model, state, left in states]


def request_overview(hours: int) -> dict:
    """Counts per hour and per provider over the last ``hours``, for the auditors' overview page."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = now - timedelta(hours=hours)
    logs = RequestLog.objects.filter(created_at__gte=since)
    failed = Q(status__gte=400) | Q(outcome__in=["error", "cancelled"])
    per_hour = {
        row["hour"]: row
        for row in logs.annotate(hour=TruncHour("created_at")).values("hour").annotate(
            total=Count("id"), errors=Count("id", filter=failed), fallbacks=Count("id", filter=Q(fallbacks__gt=0))
        )
    }
    slots = [since + timedelta(hours=i) for i in range(hours)]
    labels = [slot.strftime("%d %H:00") for slot in slots]
    total = [per_hour.get(slot, {}).get("total", 0) for slot in slots]
    errors = [per_hour.get(slot, {}).get("errors", 0) for slot in slots]
    fallbacks = [per_hour.get(slot, {}).get("fallbacks", 0) for slot in slots]
    rate = [round(100 * e / t, 1) if t else 0.0 for e, t in zip(errors, total, strict=True)]

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
            failed=Count("id", filter=Q(outcome__in=["error", "timeout"])),
            cancelled=Count("id", filter=Q(outcome="cancelled")),
            skipped=Count("id", filter=Q(outcome="skipped")),
            avg_latency=Avg("latency_ms", filter=Q(outcome="ok")),
        )
        .order_by("provider_uid")
    )
    requests_total = sum(total)
    return {
        "totals": {
            "requests": requests_total,
            "errors": sum(errors),
            "error_rate": round(100 * sum(errors) / requests_total, 1) if requests_total else 0.0,
            "fallbacks": sum(fallbacks),
        },
        "providers": providers,
        "charts": {
            "requests": charts.bars(labels, [("served", [t - e for t, e in zip(total, errors, strict=True)]),
                                             ("failed", errors)], title="Requests per hour"),
            "error_rate": charts.lines(labels, [("error rate %", rate)], title="Error rate per hour (%)"),
            "fallbacks": charts.bars(labels, [("fallbacks", fallbacks)], title="Fallbacks taken per hour"),
            "latency": charts.lines(labels, list(series.items()), title="Average latency per provider (ms)"),
        },
    }
