"""What a client controls below the API, tried against daphne, the production server, in its own process.

- ``Daphne-Root-Path`` cannot move a request past the request log, the metrics and the body limits;
- a body over its limit is refused as soon as its length is known, before it is uploaded or stored;
- a client that sends its headers or body slowly is cut off with a 408.
"""

import json
import socket
import time

import httpx
import pytest

from tests.agent.helpers import single
from tests.processes import Daphne, migrated_with_key

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, emulator_server):
    data_dir = tmp_path_factory.mktemp("daphne-guards")
    token = migrated_with_key(data_dir)
    env = {"QALBY_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "QALBY_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with Daphne(data_dir, **env) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        config = {"uid": "openai", "provider": "openai", "api_key": emulator_server.keys["openai"],
                  "base_url": emulator_server.base_urls["openai"]}
        assert client.post("/providers/config", json=config).status_code == 201
        yield server, client
        client.close()


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_client_root_path_does_not_route_around_the_request_log(daphne, emulator):
    _server, client = daphne
    response = client.post("/zz/agent/run", json=single("openai"), headers={"Daphne-Root-Path": "/zz"})
    assert response.status_code == 404
    config = {"uid": "sneaky", "provider": "openai", "api_key": "sk-x"}
    response = client.post("/zz/providers/config", json=config, headers={"Daphne-Root-Path": "/zz"})
    assert response.status_code == 404
    assert "sneaky" not in client.get("/providers/configs").text
    # Under the audio prefix, a 2 MiB chat body would have passed the audio endpoints' larger limit.
    body = single("openai", text="x" * 2 * 1024 * 1024)
    response = client.post("/audio/transcribe/agent/run", json=body, headers={"Daphne-Root-Path": "/audio/transcribe"})
    assert response.status_code == 404
    assert emulator.recorded("openai") == []
    # The real path still works, and is logged.
    assert client.post("/agent/run", json=single("openai")).status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_sent(daphne):
    server, _client = daphne
    sock = connect(server)
    # Anonymous, 30 MB announced, not one byte of it sent: the answer comes anyway.
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 30000000\r\n\r\n")
    started = time.monotonic()
    answer = read_all(sock)
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["detail"] == "request body too large (limit 1048576 bytes)"


def test_expect_continue_gets_the_refusal_not_a_continue(daphne):
    server, _client = daphne
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 2000000\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(daphne):
    server, _client = daphne
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    sent, refused = 0, False
    try:
        for _ in range(200):  # up to 13 MB; the limit is 1 MiB
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
    except OSError:  # the server closed the connection while we were still sending
        refused = True
    answer = read_all(sock) if not refused else sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < 6 * 1024 * 1024


def dribble(sock: socket.socket, byte: bytes) -> tuple[bytes, float]:
    """Send one byte every 0.3 s (each resets Twisted's idle timeout) until the server answers and
    closes: (its answer, seconds it took), within 10 s."""
    started = time.monotonic()
    sock.settimeout(0.3)
    answer = b""
    while time.monotonic() - started < 10:
        try:
            sock.sendall(byte)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - started


def test_slow_headers_get_a_408(daphne):
    server, _client = daphne
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer, took = dribble(sock, b"X")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < HEADER_TIMEOUT + 4


def test_a_slow_body_gets_a_408(daphne):
    server, _client = daphne
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    answer, took = dribble(sock, b" ")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + 4


def test_an_idle_keep_alive_connection_is_not_a_slow_client(daphne):
    server, _client = daphne
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle between requests: no deadline runs
        assert client.get("/healthz").status_code == 200
        assert client.post("/agent/run", content=b"{}" + b" " * 500_000,
                           headers={"Content-Type": "application/json"}).status_code == 401


def test_only_a_request_with_a_key_may_send_an_upload_sized_body(daphne):
    server, _client = daphne
    head = (b"POST /audio/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 2000000\r\n")
    sock = connect(server)
    sock.sendall(head + b"\r\n")  # no key: the JSON endpoints' 1 MiB limit
    assert read_all(sock).startswith(b"HTTP/1.1 413")
    sock = connect(server)
    sock.sendall(head + b"Authorization: Bearer qpk_wrong_key\r\nConnection: close\r\n\r\n" + b"x" * 2_000_000)
    assert read_all(sock).startswith(b"HTTP/1.1 401")  # the upload limit applies; the key is then refused
