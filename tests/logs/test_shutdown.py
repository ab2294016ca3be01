"""A graceful stop right after a burst loses no request log (the production server, several workers too)."""

import asyncio
import signal
import sqlite3

import httpx
import pytest

from tests.processes import Server, manage


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_stopping_the_server_right_after_a_burst_loses_no_log(tmp_path, emulator, workers):
    assert manage(tmp_path, "migrate", "--noinput").returncode == 0
    token = manage(tmp_path, "create_api_key", "burst", "--scope", "use", "--scope", "manage").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    # A batch window longer than the test: only the shutdown flush can write these records.
    with Server(tmp_path, QALBY_LOG_BATCH_SECONDS="30", QALBY_LOG_BATCH_SIZE="1000", QALBY_WORKERS=workers) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            config = {"uid": "emu", "provider": "openai", "api_key": emulator.keys["openai"],
                      "base_url": emulator.base_urls["openai"]}
            assert (await client.post("/providers/config", json=config)).status_code == 201
            body = {"provider_uid": "emu", "model": "m~lat50", "messages": [{"role": "user", "content": "hi"}]}
            responses = await asyncio.gather(*(client.post("/agent/run", json=body) for _ in range(40)))
            assert [r.status_code for r in responses] == [200] * 40
        assert server.stop(signal.SIGTERM) == 0, server.output
    with sqlite3.connect(tmp_path / "qalby.sqlite3") as db:
        (logs,) = db.execute("SELECT count(*) FROM providers_requestlog").fetchone()
        (attempts,) = db.execute("SELECT count(*) FROM providers_attempt").fetchone()
    assert (logs, attempts) == (41, 40), server.output
