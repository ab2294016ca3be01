"""The database a server process of a log test writes to: the suite's own kind of database.

A run with DATABASE_URL naming PostgreSQL (``make test-postgres``) must test the writer on
PostgreSQL too: its statements (UNNEST arrays), its errors and its locks differ from SQLite's.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.processes import postgres_database


class ServerDatabase:
    """``env``: what to add to a server's environment (``Server(..., **db.env)``, ``manage(..., **db.env)``)."""

    def __init__(self, data_dir: Path, url: str | None) -> None:
        self.url = url
        self.vendor = "postgresql" if url else "sqlite"
        self.env = {"DATABASE_URL": url} if url else {}
        self.path = data_dir / "qalby.sqlite3"  # where tests.processes points a server without DATABASE_URL

    def rows(self, sql: str, *params) -> list[tuple]:
        """``sql`` with ``%s`` placeholders, run on the server's database."""
        if self.url:
            with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1)) as db:
                return db.execute(sql, params).fetchall()
        with sqlite3.connect(self.path) as db:
            return db.execute(sql.replace("%s", "?"), params).fetchall()

    def logged(self, request_ids) -> list[str]:
        ids = list(request_ids)
        marks = ", ".join(["%s"] * len(ids)) or "NULL"
        return [r for r, in self.rows(f"SELECT request_id FROM providers_requestlog WHERE request_id IN ({marks})", *ids)]


@pytest.fixture
def server_database(tmp_path):
    """A database of the test's own for the server processes it starts in ``tmp_path``: on the suite's
    PostgreSQL when DATABASE_URL names one (created, then dropped), else SQLite in ``tmp_path``."""
    suite = os.environ.get("DATABASE_URL", "")
    if not suite.startswith(("postgres://", "postgresql://")):
        yield ServerDatabase(tmp_path, None)
        return
    with postgres_database("qalby_logs", suite) as url:
        yield ServerDatabase(tmp_path, url)
