"""The SSRF guard's network backend keeps httpcore2's whole interface: written for the mutation check
(scripts/mutation.py), which found no test reaching the one call the pool makes only between retries."""

import time

from agent.tools import guard


async def test_the_guarded_backend_sleeps_as_the_backend_it_wraps():
    backend = guard.transport()._pool._network_backend  # what the connection pool calls (httpcore2's interface)
    assert isinstance(backend, guard._GuardedBackend)
    started = time.monotonic()
    await backend.sleep(0.05)
    assert time.monotonic() - started >= 0.045
