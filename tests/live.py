"""The project's ASGI application served over real HTTP on a loopback port, for tests."""

import asyncio
import threading

import uvicorn
from asgiref.sync import sync_to_async
from django.db import connections

from qalby_site.serve import GuardedHttpTools


class LiveServer:
    def __init__(self, app) -> None:
        # The production server's protocol and options (qalby_site/serve.py), on the test's own loop.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", loop="asyncio",
            http=GuardedHttpTools, proxy_headers=False, timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="live", daemon=True)
        self.url = ""

    async def _serve(self) -> None:
        await self.server.serve()
        # The ORM ran in asgiref's thread-sensitive executor; close its connections there, or
        # PostgreSQL refuses to drop the test database at the end of the session.
        await sync_to_async(connections.close_all)()

    def start(self) -> "LiveServer":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the live server failed to start")
            self.thread.join(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled (streams whose client left finish server-side later)."""
        import time

        deadline = time.monotonic() + timeout
        while self.server.server_state.tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
