"""The auditors' admin: read-only logs with filters, search, attempts inline, CSV, and who sees them."""

import csv
import io
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone

from providers.models import Attempt, DatabaseOutage, RequestLog
from providers.roles import ADMINISTRATORS, AUDITORS, ensure_roles

pytestmark = pytest.mark.django_db


@pytest.fixture
def logs_made():
    now = timezone.now()
    made = []
    for i, (provider, status, fallbacks) in enumerate(
        [("openai", 200, 0), ("anthropic", 200, 1), ("google", 502, 0), ("groq", 429, 0), ("openai", 200, 0)]
    ):
        log = RequestLog.objects.create(
            request_id=f"req-{i}", created_at=now - timedelta(minutes=10 * i), endpoint="POST /agent/run",
            mode="sequential", status=status, outcome="ok" if status == 200 else "error",
            provider_uid=provider if status == 200 else "", model="m", latency_ms=100 + i, attempt_count=1 + fallbacks,
            fallbacks=fallbacks, client_key_name="mobile" if i % 2 else "backend", client_key_prefix="abcd1234",
            error="" if status == 200 else "all attempts failed",
        )
        Attempt.objects.create(request_log=log, order=0, provider_uid=provider, model="m",
                               outcome="ok" if status == 200 else "error", latency_ms=90 + i)
        made.append(log)
    return made


@pytest.fixture
def staff(client):
    ensure_roles(apps)

    def login(group: str):
        user = User.objects.create_user(f"{group.lower()}-1", password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.mark.parametrize("group", [AUDITORS, ADMINISTRATORS])
def test_auditors_and_administrators_read_logs_but_change_nothing(staff, logs_made, group):
    client = staff(group)
    listing = client.get("/admin/providers/requestlog/")
    assert listing.status_code == 200
    assert all(f"req-{i}".encode() in listing.content for i in range(5))
    log = logs_made[1]
    page = client.get(f"/admin/providers/requestlog/{log.pk}/change/")
    assert page.status_code == 200
    assert b"anthropic" in page.content and b"Attempts" in page.content
    assert b'name="_save"' not in page.content  # nothing to save
    assert client.post(f"/admin/providers/requestlog/{log.pk}/change/", {"status": 500}).status_code == 403
    assert client.get("/admin/providers/requestlog/add/").status_code == 403
    assert client.post(f"/admin/providers/requestlog/{log.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RequestLog.objects.get(pk=log.pk).status == 200
    assert RequestLog.objects.count() == 5


def test_even_a_superuser_cannot_change_logs(client, logs_made):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    assert client.get("/admin/providers/requestlog/add/").status_code == 403
    listing = client.get("/admin/providers/requestlog/")
    assert b"delete_selected" not in listing.content


def test_filters_and_search_by_request_id(staff, logs_made):
    client = staff(AUDITORS)
    found = client.get("/admin/providers/requestlog/?q=req-3")
    assert b"req-3" in found.content and b"req-1<" not in found.content
    errors = client.get("/admin/providers/requestlog/?status__exact=502")
    assert b"req-2" in errors.content and b"req-0" not in errors.content
    by_key = client.get("/admin/providers/requestlog/?client_key_name__exact=mobile")
    assert b"req-1" in by_key.content and b"req-0" not in by_key.content
    by_provider = client.get("/admin/providers/requestlog/?provider_uid__exact=openai")
    assert b"req-4" in by_provider.content and b"req-1" not in by_provider.content


def test_csv_export_follows_the_filters(staff, logs_made):
    client = staff(AUDITORS)
    listing = client.get("/admin/providers/requestlog/?outcome__exact=error")
    assert b"export.csv?outcome__exact=error" in listing.content
    response = client.get("/admin/providers/requestlog/export.csv?outcome__exact=error")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["request_id"] for r in rows) == ["req-2", "req-3"]
    assert rows[0]["endpoint"] == "POST /agent/run"


def test_people_without_the_role_see_no_logs(client, logs_made):
    user = User.objects.create_user("someone", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/providers/requestlog/").status_code == 403
    assert client.get("/admin/providers/requestlog/export.csv").status_code == 403
    assert client.get("/admin/providers/requestlog/overview/").status_code == 403


def test_the_overview_counts_what_happened(staff, logs_made):
    client = staff(AUDITORS)
    page = client.get("/admin/providers/requestlog/overview/?hours=6")
    assert page.status_code == 200
    context = page.context
    # The 502 and the 429 every attempt got upstream are the providers' failures, not the client's.
    assert context["totals"] == {"requests": 5, "served": 3, "client_errors": 0, "provider_failures": 2,
                                 "cancelled": 0, "provider_failure_rate": 40.0, "fallbacks": 1}
    assert page.content.count(b'<svg class="qalby-chart"') == 4
    assert b"<script" not in page.content.split(b"qalby-charts")[1]  # server-side, nothing to fetch


def test_the_overview_lists_the_database_outages_of_the_period(staff):
    now = timezone.now()
    DatabaseOutage.objects.create(replica="pod-a", began_at=now - timedelta(minutes=5),
                                  ended_at=now - timedelta(minutes=4), stale_reads=1234)
    DatabaseOutage.objects.create(replica="pod-old", began_at=now - timedelta(days=3),
                                  ended_at=now - timedelta(days=3) + timedelta(seconds=9), stale_reads=1)
    page = staff(AUDITORS).get("/admin/providers/requestlog/overview/?hours=24")
    assert [(o["replica"], o["seconds"], o["stale_reads"]) for o in page.context["outages"]] == [("pod-a", 60.0, 1234)]
    assert b"pod-a" in page.content and b"pod-old" not in page.content


def test_old_logs_are_pruned(logs_made, capsys):
    RequestLog.objects.filter(request_id="req-0").update(created_at=timezone.now() - timedelta(days=100))
    DatabaseOutage.objects.create(replica="old", began_at=timezone.now() - timedelta(days=100),
                                  ended_at=timezone.now() - timedelta(days=100))
    DatabaseOutage.objects.create(replica="new", began_at=timezone.now(), ended_at=timezone.now())
    call_command("prune_request_logs", "--days", "90")
    assert "Deleted 1 request log(s) and 1 database outage record(s)" in capsys.readouterr().out
    assert list(DatabaseOutage.objects.values_list("replica", flat=True)) == ["new"]
    assert not RequestLog.objects.filter(request_id="req-0").exists()
    assert not Attempt.objects.filter(request_log_id=logs_made[0].pk).exists()
    assert RequestLog.objects.count() == 4
