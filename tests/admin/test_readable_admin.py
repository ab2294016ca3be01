"""What the admin's pages say: endpoints by route pattern, short request ids that still find their log,
client errors apart from provider failures, one label per field."""

import csv
import io
import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.utils import timezone

from providers.models import Attempt, RequestLog
from providers.requestlogs.admin import api_routes
from providers.requestlogs.batching import writer
from providers.roles import ADMINISTRATORS, AUDITORS, ensure_roles
from providers.services import provider_config_upsert
from tests.admin.helpers import request_id, staff_session
from tests.agent.helpers import single

LOGS = "/admin/providers/requestlog/"


def filter_choices(html: str, title: str) -> dict[str, str]:
    """A list filter's choices as the page shows them: text -> link."""
    block = re.search(rf'<details data-filter-title="{title}".*?</details>', html, re.S)
    assert block, f"no {title} filter on the page"
    return {unescape(text).strip(): unescape(href)
            for href, text in re.findall(r'<a href="([^"]*)">(.*?)</a>', block.group(0), re.S)}


def listed_ids(html: str) -> list[str]:
    """The whole request ids of the rows a list shows (each short id carries its id as a title)."""
    return [unescape(full) for full in re.findall(r'class="qalby-id" title="([^"]*)"', html)]


@pytest.fixture
async def admin(live_server_url):
    session = await sync_to_async(staff_session)(AUDITORS)
    async with httpx.AsyncClient(base_url=live_server_url, cookies={"sessionid": session}, timeout=30) as client:
        yield client


@pytest.mark.django_db(transaction=True)
async def test_the_endpoint_filter_offers_route_patterns_and_one_unmatched_choice(http, make_key, admin):
    use = {"Authorization": f"Bearer {await make_key('use', name='app')}"}
    manage = {"Authorization": f"Bearer {await make_key('manage', name='ops')}"}
    sent = {  # logged by the real middleware, as the API answered them
        "run-1": await http.post("/agent/run", json=single("nowhere"), headers={**use, "X-Request-ID": "run-1"}),
        "typo-1": await http.post("/agent/run/", json=single("nowhere"), headers={**use, "X-Request-ID": "typo-1"}),
        "method-1": await http.get("/agent/run", headers={**use, "X-Request-ID": "method-1"}),
        "v1-typo-1": await http.post("/v1/chat/completion", json={}, headers={**use, "X-Request-ID": "v1-typo-1"}),
        "uid-1": await http.delete("/providers/config/no-such-config", headers={**manage, "X-Request-ID": "uid-1"}),
    }
    assert {name: r.status_code for name, r in sent.items()} == {
        "run-1": 404, "typo-1": 404, "method-1": 405, "v1-typo-1": 404, "uid-1": 404}
    assert await sync_to_async(writer.flush)(timeout=10)

    choices = filter_choices((await admin.get(LOGS)).text, "endpoint")
    assert list(choices) == ["All", *api_routes(), "unmatched (404, 405)"]
    assert {"POST /agent/run", "DELETE /providers/config/{uid}", "POST /v1/chat/completions"} <= set(choices)
    assert not [c for c in choices if c.endswith("/") or "rest" in c or c.startswith(("GET /agent", "OTHER"))]

    expected = {
        "POST /agent/run": ["run-1"],
        "DELETE /providers/config/{uid}": ["uid-1"],
        "unmatched (404, 405)": ["v1-typo-1", "method-1", "typo-1"],
        "POST /audio/speak": [],
    }
    for choice, ids in expected.items():
        page = await admin.get(LOGS + choices[choice])
        assert listed_ids(page.text) == ids, choice
        export = await admin.get(LOGS + "export.csv" + choices[choice])
        assert sorted(r["request_id"] for r in csv.DictReader(io.StringIO(export.text))) == sorted(ids), choice
    # A path a client typed is no endpoint to filter on.
    assert (await admin.get(LOGS + "?endpoint=POST+/agent/run/")).status_code == 302  # Django's "?e=1"
    assert (await admin.get(LOGS + "export.csv?endpoint=POST+/agent/run/")).status_code == 400


@pytest.mark.django_db
def test_a_log_is_found_by_its_whole_id_or_by_the_end_the_list_shows(client):
    client.cookies["sessionid"] = staff_session(AUDITORS)
    now = timezone.now()
    ids = [request_id() for _ in range(3)] + ["req-7"]
    for i, rid in enumerate(ids):
        RequestLog.objects.create(request_id=rid, created_at=now - timedelta(minutes=i), endpoint="POST /agent/run",
                                  status=200, outcome="ok")
    whole = ids[1]
    for term in [whole, whole[-8:], "\N{HORIZONTAL ELLIPSIS}" + whole[-8:], "..." + whole[-8:], f"  {whole} "]:
        assert listed_ids(client.get(LOGS, {"q": term}).content.decode()) == [whole], term
    assert listed_ids(client.get(LOGS, {"q": "req-7"}).content.decode()) == ["req-7"]
    assert listed_ids(client.get(LOGS, {"q": whole[:16]}).content.decode()) == []  # a process prefix names no log
    detail = client.get(f"{LOGS}{RequestLog.objects.get(request_id=whole).pk}/change/").content.decode()
    assert whole in detail


# (status, outcome, attempts, attempt error types): what the rows of a busy hour may record.
ROWS = [
    (200, "ok", 1, []), (200, "done", 2, ["Unavailable"]), (200, "ok", 1, []),
    (400, "error", 0, []),  # the body did not validate
    (400, "error", 1, ["BadRequest"]),  # the provider refused the input itself (too long)
    (400, "error", 1, ["content_policy"]),
    (401, "error", 0, []), (403, "error", 0, []), (404, "error", 0, []), (405, "error", 0, []), (413, "error", 0, []),
    (429, "error", 2, ["RateLimited", "RateLimited"]),  # every provider rate limited us
    (502, "error", 2, ["Unavailable", "AuthFailed"]), (503, "error", 1, ["ProviderDisabled"]),
    (504, "error", 1, ["Timeout"]), (500, "error", 0, []),
    (200, "error", 1, ["Unavailable"]),  # a stream broke after its first chunk
    (200, "cancelled", 1, []),  # the client left mid-stream
]
CLIENT_ERRORS, PROVIDER_FAILURES, CANCELLED = 8, 6, 1


def seed_overview_rows() -> None:
    # All in one hour (half past the last one that began), so that each hourly bar holds all of them.
    anchor = timezone.now().replace(minute=30, second=0, microsecond=0)
    if anchor > timezone.now():
        anchor -= timedelta(hours=1)
    for i, (status, outcome, count, kinds) in enumerate(ROWS):
        log = RequestLog.objects.create(request_id=f"r{i}", created_at=anchor - timedelta(seconds=i),
                                        endpoint="POST /agent/run", status=status, outcome=outcome,
                                        attempt_count=count, fallbacks=max(count - 1, 0))
        for order in range(count):
            kind = kinds[order] if order < len(kinds) else ""
            Attempt.objects.create(request_log=log, order=order, provider_uid="openai", model="m",
                                   outcome="timeout" if kind == "Timeout" else "error" if kind else "ok",
                                   error_type=kind, latency_ms=100)


@pytest.mark.django_db
def test_the_overview_tells_client_errors_from_provider_failures(client):
    seed_overview_rows()
    client.cookies["sessionid"] = staff_session(AUDITORS)
    page = client.get(LOGS + "overview/?hours=6")
    assert page.status_code == 200
    totals = page.context["totals"]
    assert (totals["requests"], totals["served"], totals["client_errors"], totals["provider_failures"],
            totals["cancelled"]) == (len(ROWS), 3, CLIENT_ERRORS, PROVIDER_FAILURES, CANCELLED)
    assert totals["provider_failure_rate"] == round(100 * PROVIDER_FAILURES / len(ROWS), 1)
    html = page.content.decode()
    for tile, value in [("client-errors", CLIENT_ERRORS), ("provider-failures", PROVIDER_FAILURES),
                        ("served", 3), ("total-requests", len(ROWS))]:
        assert f'id="{tile}">{value}<' in html, tile
    assert "client errors: 8" in html and "provider failures: 6" in html  # the bars' titles
    # The provider refusing the input is not counted as its failure.
    [openai] = page.context["providers"]
    assert (openai["failed"], openai["refused"]) == (8, 2), openai


def labels_of(html: str) -> list[str]:
    form = html.split('id="providerconfig_form"', 1)[1].split('class="submit-row"', 1)[0]
    return [re.sub(r"<[^>]+>", "", label).strip().rstrip(":") for label in re.findall(r"<label[^>]*>(.*?)</label>",
                                                                                     form, re.S)]


@pytest.mark.django_db
def test_the_provider_config_pages_have_one_label_per_field(client):
    ensure_roles(apps)
    user = User.objects.create_user("admin-labels", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=ADMINISTRATORS))
    client.force_login(user)
    raw = "sk-label-test-Q1w2E3r4T5y6U7i8O9p0"
    config, _ = provider_config_upsert(uid="labelled", provider="openai", api_key=raw)

    change = client.get(f"/admin/providers/providerconfig/{config.pk}/change/").content.decode()
    labels = labels_of(change)
    assert labels == ["UID", "Provider", "Stored API key", "New API key", "Base URL", "Options", "Enabled",
                      "Created at", "Updated at"]
    assert len({label.casefold() for label in labels}) == len(labels)
    assert change.count('class="form-row') == len(labels)  # and no field without one
    assert raw not in change and raw[4:-4] not in change and config.masked_key in change

    add = labels_of(client.get("/admin/providers/providerconfig/add/").content.decode())
    assert add == ["UID", "Provider", "API key", "Base URL", "Options", "Enabled"]
