"""Docker HEALTHCHECK: exit 0 when the server in this container answers ``GET /healthz`` with 200.

Standard library only and no Django import, so it costs milliseconds and needs no secrets. The
request goes to loopback, but its Host header must pass Django's ALLOWED_HOSTS check (a refused
host is a 400, which would read as "unhealthy"), so it names the first allowed host.
"""

import http.client
import os
import sys

_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def host_header(allowed_hosts: str) -> str:
    for host in (item.strip() for item in allowed_hosts.split(",")):
        if host and host != "*":
            return host.lstrip(".")  # ".example.com" allows example.com and its subdomains
    return "localhost"  # nothing listed (development defaults) or "*": any name passes


def main() -> int:
    bound = os.environ.get("HOST", "127.0.0.1")
    target = _LOOPBACK.get(bound, bound)
    port = int(os.environ.get("PORT", "8000"))
    connection = http.client.HTTPConnection(target, port, timeout=4)
    try:
        connection.request("GET", "/healthz", headers={"Host": host_header(os.environ.get("ALLOWED_HOSTS", ""))})
        status = connection.getresponse().status
    except OSError as exc:
        print(f"healthcheck: no answer from {target}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthcheck: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
