"""The admin over the real ASGI app: a large CSV export and static files stream, never buffered whole."""

import csv
import io
import warnings
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from providers.models import RequestLog
from tests.logs.helpers import auditor_session

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 5000
BUFFERED = "must consume synchronous iterators"  # Django's warning when it reads a body whole


def make_logs() -> None:
    now = timezone.now()
    RequestLog.objects.bulk_create(
        RequestLog(request_id=f"bulk-{i}", created_at=now - timedelta(seconds=i), endpoint="POST /agent/run",
                   mode="single", status=200 if i % 10 else 502, outcome="ok" if i % 10 else "error",
                   provider_uid="openai", model="m", latency_ms=i % 997)
        for i in range(ROWS)
    )


async def test_a_large_csv_export_and_static_files_stream_piece_by_piece(live_server_url):
    await sync_to_async(make_logs)()
    session = await sync_to_async(auditor_session)()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with httpx.AsyncClient(base_url=live_server_url, cookies={"sessionid": session}, timeout=30) as client:
            export = await client.get("/admin/providers/requestlog/export.csv")
            errors = await client.get("/admin/providers/requestlog/export.csv?outcome__exact=error")
            css = await client.get("/static/admin/css/base.css")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "content-length" not in export.headers  # streamed, not built first
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == ROWS and {r["request_id"] for r in rows} == {f"bulk-{i}" for i in range(ROWS)}
    assert {r["outcome"] for r in csv.DictReader(io.StringIO(errors.text))} == {"error"}
    assert len(list(csv.DictReader(io.StringIO(errors.text)))) == ROWS // 10
    assert css.status_code == 200 and b"body" in css.content
    assert [str(w.message) for w in caught if BUFFERED in str(w.message)] == []


@pytest.mark.parametrize("query", ["q=%00", "model__exact=m%00", "q=%00&outcome__exact=error"])
async def test_a_nul_in_the_admins_search_or_filters_is_a_400(live_server_url, query):
    # PostgreSQL cannot compare text holding a NUL: the lookup would be a server error.
    session = await sync_to_async(auditor_session)()
    async with httpx.AsyncClient(base_url=live_server_url, cookies={"sessionid": session}, timeout=30) as client:
        response = await client.get(f"/admin/providers/requestlog/?{query}")
        assert response.status_code == 400
        assert response.json()["detail"] == "bad request: NUL characters are not allowed in the URL"
        assert (await client.get("/admin/providers/requestlog/?q=ok")).status_code == 200
