"""The benchmark stack: the emulator and the proxy (its production server and settings) on loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.emulator.core import DEFAULT_KEYS  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {seconds}s")


class Stack:
    """``with Stack(**env) as stack:`` -> a migrated proxy with a client key and a config per provider."""

    def __init__(self, **env: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="qalby-bench-")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}},
            "DEBUG": "0",
            "SECRET_KEY": Fernet.generate_key().decode(),
            "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "QALBY_DATA_DIR": self.tmp.name,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.processes: list[subprocess.Popen] = []

    def manage(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def _start(self, args: list[str], url: str) -> subprocess.Popen:
        process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        wait_http(url, process)
        return process

    def __enter__(self) -> Stack:
        self.manage("migrate", "--noinput")
        self.client_key = self.manage("create_api_key", "bench", "--scope", "use", "--scope", "manage")
        emu_port, proxy_port = free_port(), free_port()
        self.emulator_root = f"http://127.0.0.1:{emu_port}"
        self._start([str(BIN / "python"), "-m", "tests.emulator", "--port", str(emu_port)], f"{self.emulator_root}/_emulator/requests?provider=none")
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        if os.environ.get("BENCH_SERVER") == "daphne":
            command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(proxy_port), "qalby_site.asgi:application"]
        else:  # the production server (make run, the image)
            command = [str(BIN / "python"), "-m", "qalby_site.serve", "--host", "127.0.0.1", "--port", str(proxy_port)]
        proxy = self._start(command, f"{self.proxy_url}/healthz")
        self.proxy_pid = proxy.pid
        headers = {"Authorization": f"Bearer {self.client_key}"}
        for provider in DEFAULT_KEYS:
            body = {"uid": f"bench-{provider}", "provider": provider, "api_key": DEFAULT_KEYS[provider],
                    "base_url": self.emulator_url(provider)}
            httpx.post(f"{self.proxy_url}/providers/config", json=body, headers=headers).raise_for_status()
        return self

    def emulator_url(self, provider: str) -> str:
        import importlib

        from tests.emulator.app import MODULES

        return importlib.import_module(MODULES[provider]).base_url(f"{self.emulator_root}/{provider}")

    def emulator_key(self, provider: str) -> str:
        return DEFAULT_KEYS[provider]

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.tmp.cleanup()
