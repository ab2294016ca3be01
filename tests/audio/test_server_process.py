"""Audio through the real servers in their own process (the production one, and served, which
``runserver`` uses): what qalby_site/servers.py is for.

- a speech stream that breaks after its first byte ends without the chunked terminator, and the
  server stays healthy (daphne's own handling of an application error would hang the client and
  stop its application checker);
- a multipart upload is neither parsed in memory (Twisted would) nor stored whole by the server.
"""

import concurrent.futures
import contextlib
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.audio.helpers import speak, uploaded, wav_file
from tests.emulator.openai_emu_audio import speech_bytes
from tests.processes import Server, migrated_with_key

TEXT = " ".join(["word"] * 12)


@contextlib.contextmanager
def serving(kind: str, data_dir: Path, emulator_server):
    """``kind`` (serve or daphne) in its own process, with configs of the emulator: (server, client)."""
    token = migrated_with_key(data_dir)
    with Server(data_dir, kind) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        for provider in ("openai", "groq"):
            config = {"uid": provider, "provider": provider, "api_key": emulator_server.keys[provider],
                      "base_url": emulator_server.base_urls[provider]}
            assert client.post("/providers/config", json=config).status_code == 201
        yield server, client
        client.close()


@pytest.fixture(scope="module", params=["serve", "daphne"])
def served(request, tmp_path_factory, emulator_server):
    """Shared by the tests of this module: none of them may stop it (see ``own_server``)."""
    with serving(request.param, tmp_path_factory.mktemp(f"{request.param}-audio"), emulator_server) as pair:
        yield pair


@pytest.fixture(params=["serve", "daphne"])
def own_server(request, tmp_path, emulator_server):
    """A server of the test's own, for a test that stops it."""
    with serving(request.param, tmp_path, emulator_server) as pair:
        yield pair


def stream(client: httpx.Client, body: dict) -> tuple[bytes, BaseException | None]:
    received = bytearray()
    with client.stream("POST", "/audio/speak_stream", json=body) as response:
        assert response.status_code == 200
        try:
            for chunk in response.iter_bytes():
                received += chunk
        except httpx.HTTPError as error:
            return bytes(received), error
    return bytes(received), None


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_large_multipart_upload_is_not_held_in_memory(served, emulator):
    server, client = served
    audio = wav_file(400.0)  # 12.8 MB
    before = _peak_rss_mib(server.process.pid)
    response = client.post("/audio/transcribe", data={"provider_uid": "groq", "model": "whisper-large-v3"},
                           files={"file": ("long.wav", audio, "audio/wav")})
    assert response.status_code == 200, response.text
    assert uploaded(emulator.recorded("groq")[0])[1] == audio
    # Twisted's own multipart parsing held about six copies of the body (75 MB here).
    assert _peak_rss_mib(server.process.pid) - before < 2 * len(audio) / 2**20


def _stored_copies(pid: int, size: int) -> int:
    """Files the server holds open that are at least ``size`` bytes (temporary files, deleted or not)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            info = os.stat(fd)
        except OSError:  # closed meanwhile
            continue
        count += stat.S_ISREG(info.st_mode) and info.st_size >= size
    return count


def test_an_upload_is_stored_at_most_twice_while_its_request_runs(served, emulator):
    server, client = served
    audio = wav_file(200.0)  # 6.4 MB: past every in-memory threshold
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The provider waits 2 s before answering: the copies are counted while the request runs.
        answer = pool.submit(client.post, "/audio/transcribe",
                             data={"provider_uid": "groq", "model": "whisper-large-v3~slow2"},
                             files={"file": ("long.wav", audio, "audio/wav")})
        most = 0
        while not answer.done():
            most = max(most, _stored_copies(server.process.pid, len(audio)))
            time.sleep(0.02)
        assert answer.result().status_code == 200
    # Django's spooled body and the parsed file (daphne: Twisted's own copy was closed once handed over).
    assert 1 <= most <= 2


def test_a_broken_speech_stream_is_cut_and_the_server_carries_on(own_server, emulator):
    server, client = own_server
    whole = speech_bytes(TEXT, "alloy", "tts-1")
    for _ in range(2):  # twice: daphne's application checker would have died after the first
        received, error = stream(client, speak("openai", model="tts-1~cut2", text=TEXT))
        assert isinstance(error, httpx.RemoteProtocolError)  # no terminator: a truncated transfer
        assert received == whole[: 2 * 4096]
    assert stream(client, speak("openai", text=TEXT)) == (whole, None)
    server.stop()  # last: its log is read when it stops
    assert "speech stream broke after 8192 bytes" in server.output
    assert "Exception inside application" not in server.output and "Traceback" not in server.output
