"""What a client controls below the API, tried against the real servers in their own process: the
production one (qalby_site/serve.py) and daphne (``runserver``).

- a root path (daphne takes one from ``Daphne-Root-Path``) cannot move a request past the request log,
  the metrics and the body limits; forwarded headers change nothing;
- a body over its limit is refused as soon as its length is known, before it is uploaded or stored;
- a client that sends its headers or body slowly is cut off with a 408.
"""

import json
import select
import socket
import time

import httpx
import pytest

from tests.agent.helpers import single
from tests.processes import Server, migrated_with_key

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0


@pytest.fixture(scope="module", params=["serve", "daphne"])
def served(request, tmp_path_factory, emulator_server):
    data_dir = tmp_path_factory.mktemp(f"{request.param}-guards")
    token = migrated_with_key(data_dir)
    env = {"QALBY_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "QALBY_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with Server(data_dir, request.param, **env) as server:
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


def test_a_client_root_path_does_not_route_around_the_request_log(served, emulator):
    _server, client = served
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


def test_a_body_over_the_limit_is_refused_before_it_is_sent(served):
    server, _client = served
    sock = connect(server)
    # Anonymous, 30 MB announced, not one byte of it sent: the answer comes anyway.
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 30000000\r\n\r\n")
    started = time.monotonic()
    answer = read_all(sock)
    assert time.monotonic() - started < 8  # answered without the body: read_all would wait for it in vain
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["detail"] == "request body too large (limit 1048576 bytes)"


def test_expect_continue_gets_the_refusal_not_a_continue(served):
    server, _client = served
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 2000000\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(served):
    server, _client = served
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    sent, answer = 0, b""
    try:
        for _ in range(1000):  # up to 64 MiB, which a server reading on would take; the limit is 1 MiB
            # As curl does: look for an early answer between pieces, and stop sending once there is one.
            if select.select([sock], [], [], 0)[0]:
                answer = sock.recv(65536)
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
    except OSError:  # the server closed the connection while we were still sending
        pass
    answer = answer or sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    # The limit, and what the two sockets' buffers hold when the answer comes (loopback buffers grow
    # to several MiB each, more under load).
    assert sent < 1024 * 1024 + 16 * 1024 * 1024


def dribble(sock: socket.socket, byte: bytes) -> tuple[bytes, float]:
    """Send one byte every 0.3 s (each resets an idle timeout) until the server answers and
    closes: (its answer, seconds it took), within 30 s (far past the deadlines under test)."""
    started = time.monotonic()
    sock.settimeout(0.3)
    answer = b""
    while time.monotonic() - started < 30:
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


def test_slow_headers_get_a_408(served):
    server, _client = served
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer, took = dribble(sock, b"X")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < HEADER_TIMEOUT + 8  # the total deadline, though each byte kept the connection busy


def test_a_slow_body_gets_a_408(served):
    server, _client = served
    sock = connect(server)
    sock.sendall(b"POST /agent/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    answer, took = dribble(sock, b" ")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + 8


def test_an_idle_keep_alive_connection_is_not_a_slow_client(served):
    server, _client = served
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle between requests: no deadline runs
        assert client.get("/healthz").status_code == 200
        assert client.post("/agent/run", content=b"{}" + b" " * 500_000,
                           headers={"Content-Type": "application/json"}).status_code == 401


def test_only_a_request_with_a_key_may_send_an_upload_sized_body(served):
    server, _client = served
    head = (b"POST /audio/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 2000000\r\n")
    sock = connect(server)
    sock.sendall(head + b"\r\n")  # no key: the JSON endpoints' 1 MiB limit
    assert read_all(sock).startswith(b"HTTP/1.1 413")
    sock = connect(server)
    sock.sendall(head + b"Authorization: Bearer qpk_wrong_key\r\nConnection: close\r\n\r\n" + b"x" * 2_000_000)
    assert read_all(sock).startswith(b"HTTP/1.1 401")  # the upload limit applies; the key is then refused


def test_headers_past_the_cap_are_refused(served):
    server, _client = served
    sock = connect(server)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
    except OSError:  # closed while we were still sending
        pass
    answer = read_all(sock)
    if server.command[-1] == "qalby_site.asgi:application":  # daphne: Twisted resets the connection
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
    else:
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
