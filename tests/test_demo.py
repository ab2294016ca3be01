"""``make demo`` (``python manage.py demo``) as a newcomer runs it: the emulator and the server as
children, demo configs and a demo key, curl lines that work as printed, and a clean stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import PYTHON, ROOT, environment, free_port, manage

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the demo prints curl lines")

KINDS = ["anthropic", "elevenlabs", "google", "groq", "openai"]
START_SECONDS = 150  # three Django start-ups on a busy 2-core machine; only a give-up point


class Demo:
    """``python manage.py demo`` in its own process, its output (and its children's) collected as it comes."""

    def __init__(self, data_dir: Path, port: int, emulator_port: int) -> None:
        self.port, self.emulator_port = port, emulator_port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [PYTHON, "manage.py", "demo", "--host", "127.0.0.1", "--port", str(port),
             "--emulator-port", str(emulator_port)],
            cwd=ROOT, env=environment(data_dir, DEBUG="1"), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_banner(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not any(line.startswith("Ctrl-C stops") for line in self.lines):
            assert self.process.poll() is None, f"the demo ended before its banner:\n{self.output}"
            assert time.monotonic() < deadline, f"no banner in {START_SECONDS} s:\n{self.output}"
            time.sleep(0.1)

    @property
    def curl_lines(self) -> list[str]:
        return [line for line in self.lines if line.startswith("curl ")]

    @property
    def token(self) -> str:
        (token,) = {match for line in self.lines for match in re.findall(r"\bqpk_[\w-]+", line)}
        return token

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        return self.wait()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_curl(line: str, cwd: Path) -> str:
    """A printed line, run as pasted into a shell."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    result = subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{line}\nexit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("migrated")
    result = manage(data, "migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture
def data_dir(migrated, tmp_path) -> Path:
    """A migrated data dir of this test's own (a copy: migrating costs a Django start-up)."""
    return Path(shutil.copytree(migrated, tmp_path / "data"))


def exercise(demo: Demo, cwd: Path) -> None:
    """Run every printed curl line, in order, and check what each answers."""
    lines = demo.curl_lines
    assert len(lines) == 5, demo.output
    assert all(f"http://127.0.0.1:{demo.port}/" in line and demo.token in line for line in lines)
    chat, stream, fallback, speak, transcribe = lines
    assert "/agent/run " in chat and "/agent/run_stream " in stream and '"requests"' in fallback
    assert "/audio/speak " in speak and "/audio/transcribe" in transcribe

    answer = json.loads(run_curl(chat, cwd))
    assert answer["output"].startswith("Hello") and answer["provider_uid"] == "demo-openai"

    events = [json.loads(line) for line in run_curl(stream, cwd).splitlines() if line.strip()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "done", events
    assert "".join(e["text"] for e in events if e["type"] == "delta").startswith("Tell me a short story")

    answer = json.loads(run_curl(fallback, cwd))
    first, second = answer["attempts"]
    assert (first["provider_uid"], first["status"], first["error_type"]) == ("demo-openai", "error", "Unavailable")
    assert (second["provider_uid"], second["status"]) == ("demo-anthropic", "ok")
    assert answer["provider_uid"] == "demo-anthropic" and answer["output"].startswith("Hello")

    assert "audio/wav" in run_curl(speak, cwd)
    audio = (cwd / "hello.wav").read_bytes()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 44

    answer = json.loads(run_curl(transcribe, cwd))
    assert answer["text"] and answer["provider_uid"] == "demo-groq"


@pytest.mark.timeout(300)
def test_the_printed_lines_work_and_a_stop_stops_both_children_then_a_rerun_replaces_the_key(data_dir, tmp_path):
    port, emulator_port = free_port(), free_port()
    demo = Demo(data_dir, port, emulator_port)
    try:
        demo.wait_for_banner()
        exercise(demo, tmp_path)
        assert f"http://127.0.0.1:{port}/docs" in demo.output and f"http://127.0.0.1:{port}/admin/" in demo.output
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output
    assert "Traceback" not in demo.output, demo.output
    assert not port_open(port) and not port_open(emulator_port), "a child outlived the demo"

    # Again on the same data dir and ports: the configs are replaced, not duplicated; the key is new.
    old_token = demo.token
    again = Demo(data_dir, port, emulator_port)
    try:
        again.wait_for_banner()
        assert again.token != old_token
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/providers/configs", headers={"Authorization": f"Bearer {old_token}"}).status_code == 401
        configs = httpx.get(f"{url}/providers/configs", headers={"Authorization": f"Bearer {again.token}"}).json()
        demo_configs = [c for c in configs if c["uid"].startswith("demo-")]
        assert sorted(c["provider"] for c in demo_configs) == KINDS
        assert sorted(c["uid"] for c in demo_configs) == sorted(f"demo-{kind}" for kind in KINDS)
        assert all(f"127.0.0.1:{emulator_port}/" in c["base_url"] for c in demo_configs)
        answer = json.loads(run_curl(again.curl_lines[0], tmp_path))
        assert answer["output"].startswith("Hello"), answer
    finally:
        code = again.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in again.output, again.output
    assert not port_open(port) and not port_open(emulator_port), "a child outlived the demo"


def _pid_of_emulator(port: int) -> int:
    wanted = b"\0".join([b"tests.emulator", b"--host", b"127.0.0.1", b"--port", str(port).encode(), b""])
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no emulator process on port {port}")


def test_a_child_that_dies_stops_the_other_and_the_demo_fails_saying_so(data_dir):
    port, emulator_port = free_port(), free_port()
    demo = Demo(data_dir, port, emulator_port)
    try:
        demo.wait_for_banner()
        os.kill(_pid_of_emulator(emulator_port), signal.SIGKILL)
        code = demo.wait()
    finally:
        if demo.process.poll() is None:
            demo.stop(signal.SIGTERM)
    assert code != 0, demo.output
    assert "the emulator stopped unexpectedly" in demo.output and "Traceback" not in demo.output, demo.output
    assert not port_open(port), "the server outlived the demo"


def test_a_port_in_use_is_named_without_a_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = Demo(tmp_path, port, free_port())
        code = demo.wait()
    assert code != 0, demo.output
    assert f"port {port} on 127.0.0.1 is already in use" in demo.output and "Traceback" not in demo.output, demo.output
