"""What the admin's page tests share: seeded request logs, staff sessions, a browser at 1,366 px."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from providers.models import Attempt, RequestLog
from providers.roles import ensure_roles

WIDTH, HEIGHT = 1366, 768  # the common laptop screen the admin must read on
SCROLLBAR = 17  # what a classic scrollbar takes from the width (this headless Chromium hides its own)
# Set to keep the screenshots (e.g. QALBY_ADMIN_SHOTS=/tmp/admin-shots): to look at them, not to test.
SHOTS = os.environ.get("QALBY_ADMIN_SHOTS")


def staff_session(group: str) -> str:
    """The session cookie of a new staff user of ``group``."""
    ensure_roles(apps)
    user = User.objects.create_user(f"{group.lower()}-{secrets.token_hex(3)}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def request_id() -> str:
    """An id as the site makes them (qalby_site/middleware.py): 16 hex digits per process, then a counter."""
    return f"{secrets.token_hex(8)}{secrets.randbelow(1 << 20):016x}"


def wide_logs(count: int = 20) -> list[RequestLog]:
    """Rows with the widest values a list shows: long routes, providers, models and key names."""
    now = timezone.now()
    endpoints = ["DELETE /providers/config/{uid}", "POST /v1/audio/transcriptions", "POST /agent/run_stream"]
    models = ["claude-3-5-sonnet-20241022", "gemini-2.5-flash-preview-05-20", "gpt-4o-mini-transcribe"]
    logs = RequestLog.objects.bulk_create(
        RequestLog(request_id=request_id(), created_at=now - timedelta(minutes=i), endpoint=endpoints[i % 3],
                   mode="sequential", status=[200, 502, 429, 200][i % 4], outcome=["done", "error", "error",
                   "cancelled"][i % 4], route="support-chat-eu", provider_uid="anthropic-prod-eu-west",
                   model=models[i % 3], latency_ms=123456, attempt_count=3, fallbacks=2,
                   client_key_name="mobile-backend-production")
        for i in range(count)
    )
    Attempt.objects.bulk_create(
        Attempt(request_log=log, order=0, provider_uid=log.provider_uid, model=log.model, outcome="ok")
        for log in logs
    )
    return logs


async def at_laptop_width(browser, base_url: str, session: str, path: str) -> None:
    """Open an admin page as a 1,366 px wide window shows it."""
    await browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                       mobile=False)
    await browser.set_cookie(base_url, "sessionid", session)
    await browser.goto(base_url + path)


def keep(png: bytes, name: str, tmp_path: Path) -> Path:
    (tmp_path / name).write_bytes(png)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / name).write_bytes(png)
    return tmp_path / name
