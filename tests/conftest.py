import logging

import httpx
import pytest

from providers import registry
from tests import loopback_guard

loopback_guard.install()


@pytest.fixture(scope="session")
def emulator_server():
    from tests.emulator.server import EmulatorServer

    server = EmulatorServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _breakers_closed():
    """Each test starts with every circuit breaker of this process closed (their state is per model)."""
    from providers.breaker import breaker

    breaker.reset()
    yield
    breaker.reset()


@pytest.fixture(autouse=True)
def _hedging_unlearned():
    """Each test starts with no learned hedge delays (the engine learns them per model, in process)."""
    from providers.hedging import first_chunk_times

    first_chunk_times.clear()
    yield
    first_chunk_times.clear()


@pytest.fixture
def emulator(emulator_server):
    """The running emulator, with its request record and fault counters cleared for this test."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup):
    """The project's ASGI app (the same object daphne serves) over HTTP on loopback."""
    from qalby_site.asgi import application
    from tests.live import LiveServer

    server = LiveServer(application).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server_url(asgi_server):
    return asgi_server.url


@pytest.fixture
def make_key(db):
    """Create a client key: ``await make_key("use", "manage")`` -> the bearer token."""
    from asgiref.sync import sync_to_async

    from providers.services import client_key_create

    async def make(*scopes: str, name: str = "test client", **kwargs) -> str:
        _key, token = await sync_to_async(client_key_create)(name=name, scopes=list(scopes), **kwargs)
        return token

    return make


@pytest.fixture
async def http(asgi_server):
    import asyncio

    from providers.requestlogs.batching import writer

    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30) as client:
        yield client
    # The test's requests end and their logs land before its database is cleaned, not in the next test.
    await asyncio.to_thread(asgi_server.wait_idle)
    assert await asyncio.to_thread(writer.flush, 10), "the test's request logs were not written"


@pytest.fixture
def captured_logs(caplog):
    """Every log record of the test at DEBUG, for secret-leak checks."""
    caplog.set_level(logging.DEBUG)
    return caplog


CHAT_PROVIDERS = registry.offering("chat")


@pytest.fixture
async def configs(db, emulator):
    """One provider config per emulated provider (uid = provider name), pointed at the emulator."""
    from asgiref.sync import sync_to_async

    from providers.services import provider_config_upsert

    async def make(uid: str, provider: str | None = None, **overrides):
        provider = provider or uid
        fields = {"api_key": emulator.keys[provider], "base_url": emulator.base_urls[provider], **overrides}
        config, _ = await sync_to_async(provider_config_upsert)(uid=uid, provider=provider, **fields)
        return config

    for provider in ["openai", "anthropic", "google", "groq", "elevenlabs"]:
        if provider in emulator.base_urls:
            await make(provider)
    return make


@pytest.fixture
async def user(http, make_key):
    """An httpx client carrying a 'use' key."""
    http.headers["Authorization"] = f"Bearer {await make_key('use')}"
    return http


@pytest.fixture
def spans():
    """The spans the request path exports during the test, kept in memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from providers.requestlogs import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.disable()
