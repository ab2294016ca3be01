"""Benchmark: the CPU the request-log writer spends per logged request.

Writes ``--entries`` synthetic log entries (two attempts each: a rate-limited one, then the one
that answered; a prompt and an answer of realistic size, as with ``QALBY_LOG_CONTENT`` on, or none
with ``--no-content``, the default setting) through a :class:`providers.requestlogs.batching.Writer`
(``enqueue`` each, then ``flush``), and prints the CPU time per 1,000 entries (3,000 rows: the
request log and its two attempts): the writer thread's own, and the whole process's. SQLite, a file
in a temporary folder as in production; and PostgreSQL too when ``DATABASE_URL`` is set, in a
throwaway database beside it, dropped at the end. Each database runs in a child process of its own
(Django's settings are per process). The database server's own CPU is not counted.

    .venv/bin/python bench/bench_logwriter.py [--entries 5000] [--rounds 3] [--no-content]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_logwriter.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORDS = "the of model answer request stream token provider latency fallback route chunk étude naïve 日本 ✓".split()


def text(rng: random.Random, chars: int) -> str:
    return " ".join(rng.choices(WORDS, k=chars // 5 + 1))[:chars]


def entries(count: int, seed: int, content: bool = True) -> list:
    from providers.fallback import AttemptRecord
    from providers.requestlogs.entry import Entry

    rng = random.Random(seed)
    made = []
    for n in range(count):
        e = Entry(request_id=f"req-{seed}-{n:06d}-{rng.getrandbits(64):016x}", endpoint="POST /agent/run",
                  created_at=datetime.now(UTC), client_key_name="backend-prod", client_key_prefix="qk_3f9a",
                  mode="sequential", route="default-chat", route_version=3)
        limited = AttemptRecord(0, "openai-main", "gpt-4o-mini", status="error", error_type="RateLimited",
                                error="openai-main/gpt-4o-mini: Rate limit reached for requests (HTTP 429)",
                                upstream_status=429, latency_ms=rng.randint(20, 400))
        served = AttemptRecord(1, "anthropic-backup", "claude-3-5-haiku-latest", status="ok",
                               latency_ms=rng.randint(300, 3000), first_chunk_ms=rng.randint(100, 900))
        e.attempts = [limited, served]
        e.usage = {"input_tokens": rng.randint(50, 2000), "output_tokens": rng.randint(20, 800)}
        if content:
            e.prompt, e.answer = text(rng, rng.randint(200, 1500)), text(rng, rng.randint(500, 4000))
        e.finish(200)
        made.append(e)
    return made


def child(count: int, rounds: int, content: bool) -> None:
    import django
    from django.conf import settings

    django.setup()
    # A database of our own, beside the configured one (never the one DATABASE_URL names).
    database = settings.DATABASES["default"]
    sqlite = database["ENGINE"].endswith("sqlite3")
    database["TEST"]["NAME"] = str(Path(os.environ["QALBY_DATA_DIR"]) / "bench.sqlite3") if sqlite else f"qalby_bench_{os.getpid()}"
    from django.db import connection

    configured = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        from providers.models import Attempt, RequestLog
        from providers.requestlogs import batching

        writer = batching.Writer()
        for e in entries(200, seed=0, content=content):  # warm-up: the thread, the connection, the caches
            writer.enqueue(e)
        assert writer.flush(timeout=60)
        process_cpu, thread_cpu, wall = [], [], []
        for r in range(rounds):
            batch = entries(count, seed=r + 1, content=content)
            clock = time.pthread_getcpuclockid(writer._thread.ident)
            t0, p0, w0 = time.clock_gettime(clock), time.process_time(), time.perf_counter()
            for e in batch:
                writer.enqueue(e)
            assert writer.flush(timeout=600)
            thread_cpu.append(time.clock_gettime(clock) - t0)
            process_cpu.append(time.process_time() - p0)
            wall.append(time.perf_counter() - w0)
        total = 200 + rounds * count
        assert writer.dropped == 0 and writer.written == total, (writer.written, writer.dropped)
        assert RequestLog.objects.count() == total and Attempt.objects.count() == 2 * total
        per = 1000 / count
        print(f"| {connection.vendor} | {count} × {rounds} | {statistics.median(thread_cpu) * per:.3f} "
              f"| {statistics.median(process_cpu) * per:.3f} | {statistics.median(wall) * per:.3f} |")
    finally:
        time.sleep(1.5)  # the idle writer closes its connection within a second; PostgreSQL drops no database in use
        connection.creation.destroy_test_db(configured, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-content", dest="content", action="store_false", help="no prompt or answer")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.entries, args.rounds, args.content)
        return
    databases = [None] + ([os.environ["DATABASE_URL"]] if os.environ.get("DATABASE_URL") else [])
    print(f"CPU seconds per 1000 entries (3000 rows), median of the rounds; {'with' if args.content else 'no'} content\n")
    print("| database | entries × rounds | writer thread CPU s | process CPU s | wall s |")
    print("|---|---|---|---|---|")
    for url in databases:
        with tempfile.TemporaryDirectory(prefix="qalby-bench-") as tmp:
            env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
            env.update(DEBUG="0", DJANGO_SETTINGS_MODULE="qalby_site.settings", QALBY_DATA_DIR=tmp,
                       SECRET_KEY=Fernet.generate_key().decode(), QALBY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
                       LOG_LEVEL="WARNING", **({"DATABASE_URL": url} if url else {}))
            subprocess.run([sys.executable, __file__, "--child", "--entries", str(args.entries), "--rounds",
                            str(args.rounds), *([] if args.content else ["--no-content"])], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
