"""What clients and auditors type cannot turn the logs admin against its readers or into a server error."""

import csv
import io
import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import single
from tests.logs.helpers import auditor_session

pytestmark = pytest.mark.django_db(transaction=True)

LOGS = "/admin/providers/requestlog/"


@pytest.fixture
async def admin(live_server_url):
    session = await sync_to_async(auditor_session)()
    async with httpx.AsyncClient(base_url=live_server_url, cookies={"sessionid": session}, timeout=30) as client:
        yield client


async def test_formulas_sent_by_clients_reach_the_csv_as_text(http, make_key, configs, admin):
    # A spreadsheet evaluates a cell starting with = + - @ (or a tab or CR before them).
    http.headers["Authorization"] = f"Bearer {await make_key('use', name='@SUM(1+1)')}"
    served = await http.post("/agent/run", json=single("openai", model="m1"), headers={"X-Request-ID": "-2-3"})
    assert served.status_code == 200
    # What older rows may hold, from before model names and uids were checked.
    await sync_to_async(RequestLog.objects.create)(
        request_id="tabbed", created_at=timezone.now() - timedelta(minutes=1), endpoint="POST /agent/run",
        status=502, outcome="error", model="=HYPERLINK(\"http://x\")", error="\t=1+2", provider_uid="\r=3",
        latency_ms=5, client_key_name="+1",
    )
    assert await sync_to_async(writer.flush)(timeout=10)
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO((await admin.get(LOGS + "export.csv")).text))}
    assert (rows["'-2-3"]["client_key_name"], rows["'-2-3"]["model"]) == ("'@SUM(1+1)", "m1")
    tabbed = rows["tabbed"]
    assert (tabbed["model"], tabbed["error"], tabbed["provider_uid"], tabbed["client_key_name"]) == (
        "'=HYPERLINK(\"http://x\")", "'\t=1+2", "'\r=3", "'+1")
    assert (tabbed["latency_ms"], tabbed["status"]) == ("5", "502")  # numbers stay numbers
    assert tabbed["endpoint"] == "POST /agent/run"  # plain text is untouched


BAD_QUERIES = [
    "hours=abc", "hours=1e3", "hours=%F0%28", "hours=12&hours=x", "status__exact=abc", "status__exact=1e3",
    "created_at__gte=abc", "created_at__gte=" + "9" * 30, "created_at__year=abc", "created_at__year=99999",
    "created_at__year=2024&created_at__month=2&created_at__day=31", "created_at__date=abc",
    "status__in=a,b", "status__range=1", "endpoint__regex=(", "model__iregex=[", "latency_ms__gt=abc",
    "_changelist_filters=x", "p=-1", "p=999",
]


@pytest.mark.parametrize("page", ["", "export.csv", "overview/"])
async def test_bad_query_values_are_a_4xx_never_a_500(admin, page):
    await sync_to_async(RequestLog.objects.create)(
        request_id="one", created_at=timezone.now(), endpoint="POST /agent/run", status=200, outcome="ok")
    for query in BAD_QUERIES:
        response = await admin.get(f"{LOGS}{page}?{query}")
        assert response.status_code < 500, (query, response.status_code)
        if page and response.status_code >= 400:
            assert response.json()["detail"], query
    assert (await admin.get(LOGS + "overview/?hours=abc")).json() == {
        "detail": "hours must be a whole number of hours (1 to 744)"}
    assert (await admin.get(LOGS + "export.csv?endpoint__regex=(")).status_code == 400


async def test_every_filter_link_of_the_list_still_works(admin):
    now = timezone.now()
    await sync_to_async(RequestLog.objects.bulk_create)(
        RequestLog(request_id=f"r{i}", created_at=now - timedelta(days=i), endpoint="POST /agent/run",
                   status=[200, 404, 502][i % 3], outcome="ok", provider_uid="openai", model="m", mode="single",
                   client_key_name="app")
        for i in range(6)
    )
    listing = await admin.get(LOGS)
    links = {unescape(link) for link in re.findall(r'href="(\?[^"]*)"', listing.text)}
    drilled = await admin.get(f"{LOGS}?created_at__year={now.year}")  # the date hierarchy's own links
    links |= {unescape(link) for link in re.findall(r'href="(\?[^"]*)"', drilled.text)}
    assert len(links) > 15
    for link in sorted(links):
        page = await admin.get(LOGS + link)
        export = await admin.get(LOGS + "export.csv" + link)
        assert (page.status_code, export.status_code) == (200, 200), link
    assert (await admin.get(LOGS + "overview/?hours=")).status_code == 200  # the default, 24 hours
    assert "Last 744 hours" in (await admin.get(LOGS + "overview/?hours=100000")).text  # clamped, not refused
