"""Headless Chromium (Debian's package) driven over the DevTools protocol, for the admin's pages."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import websockets

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1500,1300"]


class Browser:
    """``async with Browser() as page:`` then ``await page.goto(url)``, ``await page.screenshot()``."""

    def __init__(self) -> None:
        self.binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if self.binary is None:
            raise RuntimeError("Chromium is not installed: `make test` installs it (scripts/services.sh chromium)")
        self.profile = tempfile.TemporaryDirectory(prefix="qalby-chromium-", ignore_cleanup_errors=True)
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self.profile.name}", "about:blank",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: its helper processes end with it
        )
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/json/list")
        page = next(t for t in targets if t["type"] == "page")
        self.socket = await websockets.connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        await self.call("Page.enable")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.socket.close()
        # Chromium's renderer and utility processes outlive the browser process for a moment and
        # keep writing to the profile: end the whole group, then remove the profile.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for attempt in range(50):
            try:
                shutil.rmtree(self.profile.name)
                break
            except FileNotFoundError:
                break
            except OSError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)

    async def call(self, method: str, **params):
        message_id = next(self._ids)
        await self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout=30))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def set_cookie(self, url: str, name: str, value: str) -> None:
        await self.call("Network.setCookie", url=url, name=name, value=value)

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        for _ in range(200):  # until the document has loaded
            state = await self.evaluate("document.readyState")
            if state == "complete":
                return
            await asyncio.sleep(0.05)

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def screenshot(self) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(result["data"])


def _get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # the loopback DevTools endpoint
        return json.loads(response.read())
