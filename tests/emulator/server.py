"""Run the emulator on an ephemeral loopback port in a background thread (for tests)."""

from __future__ import annotations

import asyncio
import threading

import uvicorn

from tests.emulator.app import EmulatorApp
from tests.emulator.core import Emulator


class EmulatorServer:
    def __init__(self) -> None:
        self.emu = Emulator()
        self.app = EmulatorApp(self.emu)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="critical",
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="emulator", daemon=True)
        self.root = ""
        self.base_urls: dict[str, str] = {}

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> EmulatorServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the emulator failed to start")
            self.thread.join(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.root = f"http://127.0.0.1:{port}"
        self.base_urls = self.app.base_urls(self.root)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    @property
    def keys(self) -> dict[str, str]:
        return self.emu.keys

    def reset(self) -> None:
        self.emu.reset()

    def recorded(self, provider: str | None = None, path_contains: str = ""):
        return self.emu.recorded(provider, path_contains)

    def open_connections(self) -> int:
        """Connections the emulator holds open right now (active or idle keep-alive)."""
        return len(self.server.server_state.connections)
