"""Benchmark: the auditors' CSV export of a large request-log table, through the production server.

Starts the proxy (its production server; SQLite in a temporary folder), fills the log table
with ``--rows`` rows, and downloads the admin's *Export CSV* as an auditor would: the time to the
first byte and to the last, and the server's peak resident memory above what it used before.

    .venv/bin/python bench/bench_export.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Stack, rss_mib

FILL = """
from datetime import timedelta
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from providers.models import RequestLog

now, rows = timezone.now(), {rows}
for start in range(0, rows, 20000):
    RequestLog.objects.bulk_create(
        RequestLog(request_id=f"req-{{i}}", created_at=now - timedelta(seconds=i), endpoint="POST /agent/run",
                   mode="single", status=200, outcome="ok", provider_uid="openai", model="gpt-4o-mini",
                   latency_ms=i % 997, input_tokens=12, output_tokens=40, client_key_name="backend")
        for i in range(start, min(start + 20000, rows))
    )
user = User.objects.create_superuser("bench", "bench@example.com", None)
session = SessionStore()
session.update({{SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash()}})
session.create()
print(session.session_key)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with Stack() as stack:
        # The session cookie is marked Secure in production; it is sent by hand over loopback HTTP.
        session = stack.manage("shell", "-c", FILL.format(rows=args.rows)).splitlines()[-1]
        before = rss_mib(stack.proxy_pid)
        samples, done = [before], threading.Event()

        def watch() -> None:
            while not done.is_set():
                samples.append(rss_mib(stack.proxy_pid))
                time.sleep(0.01)

        threading.Thread(target=watch, daemon=True).start()
        started, first, size = time.monotonic(), None, 0
        headers = {"Cookie": f"sessionid={session}"}
        with httpx.stream("GET", f"{stack.proxy_url}/admin/providers/requestlog/export.csv", headers=headers,
                          timeout=300) as response:
            response.raise_for_status()
            for chunk in response.iter_raw():
                first = first if first is not None else time.monotonic() - started
                size += len(chunk)
        total = time.monotonic() - started
        done.set()
    print("| rows | CSV MB | first byte ms | last byte s | server peak RSS over idle MiB |")
    print("|---|---|---|---|---|")
    print(f"| {args.rows} | {size / 1e6:.1f} | {first * 1000:.0f} | {total:.2f} | {max(samples) - before:.0f} |")


if __name__ == "__main__":
    main()
