"""What a view may ask of the server beyond ASGI: to cut a streamed response that broke.

A stream that breaks after its first bytes must end without its terminator, so that the client
sees a truncated transfer, never a short answer that looks whole; ASGI cannot say this
(qalby_site/servers.py explains why, and how it is done). The site's outermost ASGI wrapper puts a
callable that does it in the scope under :data:`ABORT_KEY`; a view's body iterator calls
:func:`abort_response`, then ends. The key is defined here, below both the site and the apps, so
neither imports the other for it.
"""

from typing import Any

ABORT_KEY = "qalby.abort_response"


class ResponseAborted(Exception):
    """A response was ended on purpose without its terminator (raised only where no abort is known)."""


def abort_response(request: Any) -> None:
    """Mark ``request``'s streamed response as broken; call from its body iterator, then end it."""
    abort = getattr(request, "scope", {}).get(ABORT_KEY)
    if abort is None:  # not behind the site's wrapper (a test client): let the server cut it
        raise ResponseAborted("the stream broke after its first bytes")
    abort()
