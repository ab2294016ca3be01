"""The demo (``make demo``, ``python manage.py demo``): the product at work with no provider account.

It runs two children and supervises them: the providers' loopback emulator (``python -m
tests.emulator``, a test tool the demo only starts and reads the printed base URLs and keys of) and
the server (``python -m qalby_site.serve``, what ``make run`` starts). In between it writes, in the
database ``make run`` uses, a provider config per kind (``demo-<kind>``, pointed at the emulator) and
a fresh client key ``demo``, and prints curl lines to paste.

A stop asked for (SIGINT, SIGTERM, SIGHUP) stops both children, the server first (it finishes its
requests and writes their logs), and is not an error; a child that dies on its own stops the other
and is one (:class:`DemoError`). The children have a session of their own, so that a Ctrl-C in the
terminal reaches the demo alone and the stop keeps that order; on Linux each is also told to stop if
the demo itself dies, so that no orphan keeps a port.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from providers import registry
from providers.models import SCOPES, ClientKey, ProviderConfig
from providers.services import client_key_create

KEY_NAME = "demo"
UID_PREFIX = "demo-"
EMULATOR_HOST = "127.0.0.1"
START_SECONDS = 90  # a cold start on a busy laptop takes a few seconds; this is only the give-up point
# Past the server's own grace for requests in flight, the time it may take to write their logs.
STOP_SECONDS = float(settings.QALBY_SHUTDOWN_GRACE_SECONDS) + 10
# No proxy from the environment: the children are on this machine.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_BANNER_LINE = re.compile(r"^(?P<name>\S+)\s+base_url=(?P<url>\S+)(?:\s+api_key=(?P<key>\S+))?\s*$")


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


class Stopped(Exception):
    """A stop was asked for (a signal): not an error."""


# ---- the database part ----

def check_migrated() -> None:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise DemoError(f"the database does not answer ({exc}): check DATABASE_URL or QALBY_DATA_DIR") from None
    if pending:
        raise DemoError("the database has migrations not applied: run `make migrate` "
                        "(or `python manage.py migrate`) first; `make demo` does it for you")


def seed_configs(endpoints: dict[str, tuple[str, str]]) -> list[str]:
    """A config ``demo-<kind>`` per provider kind the emulator serves, created or replaced whole
    (so a rerun, on another emulator port too, neither fails nor duplicates); returns their uids.

    Not through ``provider_config_upsert``: its option check imports every vendor's SDK, seconds of a
    demo's start for rows whose every value is ours (no options, the emulator's URL and key)."""
    uids = []
    with transaction.atomic():
        for kind in registry.KINDS:
            if kind in endpoints:
                base_url, api_key = endpoints[kind]
                uid = f"{UID_PREFIX}{kind}"
                ProviderConfig.objects.update_or_create(uid=uid, defaults={
                    "provider": kind, "api_key": api_key, "base_url": base_url, "options": {}, "enabled": True})
                uids.append(uid)
    return uids


def replace_demo_key() -> str:
    """A new client key ``demo`` with every scope, in place of any earlier one (only a hash of a key is
    stored, so an earlier one cannot be shown again); returns its token."""
    with transaction.atomic():
        ClientKey.objects.filter(name=KEY_NAME).delete()
        _key, token = client_key_create(name=KEY_NAME, scopes=list(SCOPES))
    return token


# ---- what the demo prints ----

def url_of(host: str, port: int) -> str:
    """The URL to reach a server bound to ``host`` from this machine (as qalby_site.serve shows it)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _json(body: dict) -> str:
    return shlex.quote(json.dumps(body))


def examples(url: str, token: str) -> list[tuple[str, str]]:
    """(what it shows, a curl line): one per endpoint family, on the demo configs."""
    auth = f"-H {shlex.quote('Authorization: Bearer ' + token)}"
    as_json = f"{auth} -H 'Content-Type: application/json'"
    hello = [{"role": "user", "content": "Hello"}]
    story = [{"role": "user", "content": "Tell me a short story"}]
    chain = {"requests": [{"provider_uid": "demo-openai", "model": "gpt-4o-mini~e503", "messages": hello},
                          {"provider_uid": "demo-anthropic", "model": "claude-sonnet-4-5", "messages": hello}],
             "strategy": "sequential"}
    speech = {"provider_uid": "demo-elevenlabs", "model": "eleven_multilingual_v2", "text": "Hello from Qalby",
              "voice": "Rachel", "output_format": "wav"}
    return [
        ("Chat (OpenAI)",
         f"curl -sS -X POST {url}/agent/run {as_json} -w '\\n' "
         f"-d {_json({'provider_uid': 'demo-openai', 'model': 'gpt-4o-mini', 'messages': hello})}"),
        ("Stream (Gemini): one JSON line per event, the last one 'done'",
         f"curl -sSN -X POST {url}/agent/run_stream {as_json} "
         f"-d {_json({'provider_uid': 'demo-google', 'model': 'gemini-2.5-flash', 'messages': story})}"),
        ("Fallback: the model name gpt-4o-mini~e503 makes OpenAI answer 503, so Anthropic answers; "
         "'attempts' shows both" + _breaker_hint(),
         f"curl -sS -X POST {url}/agent/run {as_json} -w '\\n' -d {_json(chain)}"),
        ("Speech (ElevenLabs) into hello.wav",
         f"curl -sSf -X POST {url}/audio/speak {as_json} -d {_json(speech)} -o hello.wav "
         "-w 'hello.wav: %{content_type}, %{size_download} bytes\\n'"),
        ("Transcription (Groq) of hello.wav",
         f"curl -sS -X POST {url}/audio/transcribe {auth} -w '\\n' "
         "-F provider_uid=demo-groq -F model=whisper-large-v3 -F file=@hello.wav"),
    ]


def _breaker_hint() -> str:
    threshold = settings.QALBY_BREAKER_THRESHOLD
    if not threshold:
        return ""
    return (f"\n(after {threshold} failures in a row OpenAI's circuit breaker opens: its attempt is 'skipped' "
            f"for {settings.QALBY_BREAKER_COOLDOWN:g} s)")


def banner(url: str, emulator_url: str, uids: list[str], token: str) -> str:
    lines = [
        "",
        f"Qalby Proxy demo: the server on {url}, its providers emulated on {emulator_url}",
        "(tests/emulator: a loopback fake of each provider's API; answers echo what they were asked, and",
        " faults are chosen by the model name, as in gpt-4o-mini~e503).",
        "",
        f"Provider configs: {', '.join(uids)}",
        f"Client key '{KEY_NAME}' (scopes {', '.join(SCOPES)}), shown once; each demo replaces it:",
        f"  {token}",
        "",
        "Paste these in another terminal:",
    ]
    for title, command in examples(url, token):
        lines += ["", *(f"# {line}" for line in title.splitlines()), command]
    lines += [
        "",
        f"API docs: {url}/docs",
        f"Admin:    {url}/admin/  (the demo configs, the request logs of the calls above; a login:",
        "          DEBUG=1 .venv/bin/python manage.py createsuperuser)",
        "",
        "Ctrl-C stops the server and the emulator. The demo configs stay, but answer only while a demo runs.",
        "",
    ]
    return "\n".join(lines)


# ---- the children ----

def _stop_with_parent() -> None:  # runs in the child, between fork and exec
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as uvicorn binds: with SO_REUSEADDR, so a
    connection of an earlier run in TIME_WAIT does not count)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError:
        return False
    return True


def answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status)."""
    try:
        with _opener.open(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    output: Path | None = None  # where its stdout goes, when the demo reads it


@dataclass
class Demo:
    """Starts, watches and stops the children; ``stop_requested`` is set by the signal handlers."""

    children: list[Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    signal_name: str = ""

    def handle_signals(self) -> None:
        def on_signal(signum, _frame):
            self.signal_name = signal.Signals(signum).name
            self.stop_requested.set()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)

    def start(self, name: str, args: list[str], read_output: bool = False) -> Child:
        env = {**os.environ, "QALBY_DATA_DIR": str(Path(settings.DATA_DIR).resolve()), "PYTHONUNBUFFERED": "1"}
        output = None
        stdout = None
        if read_output:
            fd, path = tempfile.mkstemp(prefix=f"qalby-demo-{name}-", suffix=".log")
            output, stdout = Path(path), fd
        try:
            process = subprocess.Popen([sys.executable, *args], cwd=settings.BASE_DIR, env=env, stdout=stdout,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=_stop_with_parent)  # no other thread runs
        finally:
            if stdout is not None:
                os.close(stdout)
        child = Child(name, process, output)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise Stopped when a stop was asked for, DemoError when a child has died."""
        if self.stop_requested.is_set():
            raise Stopped(self.signal_name)
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                others = [c.name for c in self.children if c is not child]
                also = f"; the {' and the '.join(others)} stopped too" if others else ""
                raise DemoError(f"the {child.name} stopped unexpectedly (exit code {code}; its log is above){also}")

    def wait_until(self, what: str, ready, seconds: float = START_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not start within {seconds:.0f} s")
            self.stop_requested.wait(0.1)

    def watch(self) -> None:
        """Until a stop is asked for (Stopped) or a child dies (DemoError)."""
        while True:
            self.check()
            self.stop_requested.wait(0.25)

    def stop_all(self) -> None:
        """Stop the children, the last started first: the server, then the emulator it calls."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
                try:
                    child.process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
            if child.output:
                child.output.unlink(missing_ok=True)
        self.children.clear()


def emulator_endpoints(child: Child) -> dict[str, tuple[str, str]]:
    """What the emulator printed: {provider: (base_url, api_key)} for the providers that take a key."""
    found = {}
    for line in child.output.read_text().splitlines():
        match = _BANNER_LINE.match(line)
        if match and match["key"]:
            found[match["name"]] = (match["url"], match["key"])
    return found


def run(host: str, port: int, emulator_port: int, write) -> None:
    """The whole demo; ``write`` prints a line. Returns after a stop asked for; raises DemoError."""
    if port == emulator_port:
        raise DemoError(f"the server and the emulator cannot share port {port}: choose another EMULATOR_PORT")
    for where, at, option in ((host, port, "PORT"), (EMULATOR_HOST, emulator_port, "EMULATOR_PORT")):
        if not port_free(where, at):
            free = next((p for p in range(at + 1, min(at + 100, 65536))
                         if p not in (port, emulator_port) and port_free(where, p)), None)
            hint = f", e.g. `make demo {option}={free}`" if free else ""
            raise DemoError(f"port {at} on {where or '*'} is already in use (a `make run` or another demo?): "
                            f"stop that, or choose another port{hint}")
    demo = Demo()
    demo.handle_signals()
    check_migrated()
    url, emulator_url = url_of(host, port), f"http://{EMULATOR_HOST}:{emulator_port}"
    try:
        # Both children start at once and boot while the demo writes its rows: the server reads configs
        # and keys per request, never at start-up, so it needs them only once the banner is out.
        emulator = demo.start("emulator", ["-m", "tests.emulator", "--host", EMULATOR_HOST,
                                           "--port", str(emulator_port)], read_output=True)
        demo.start("server", ["-m", "qalby_site.serve", "--host", host, "--port", str(port)])
        demo.wait_until("the emulator", lambda: answers(emulator_url))
        # It prints its list (flushed) before it listens: once it answers, the list is whole.
        endpoints = emulator_endpoints(emulator)
        if not endpoints:
            raise DemoError("the emulator printed no provider base URLs and keys; its output:\n"
                            + emulator.output.read_text())
        uids = seed_configs(endpoints)
        token = replace_demo_key()
        demo.wait_until("the server", lambda: _ready(url))
        write(banner(url, emulator_url, uids, token))
        demo.watch()
    except Stopped as stop:
        write(f"Stopping the server and the emulator ({stop}) ...")
    finally:
        demo.stop_all()
    write("The demo has stopped.")


def _ready(url: str) -> bool:
    try:
        with _opener.open(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False
