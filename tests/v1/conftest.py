"""The openai SDK pointed at the proxy's /v1, as an app switches to it: base_url and api_key only."""

import openai
import pytest


@pytest.fixture
async def key(make_key):
    return await make_key("use")


@pytest.fixture
async def client(http, live_server_url, key):
    # `http` only so that the test's requests end before its database is cleaned (see tests/conftest.py).
    async with openai.AsyncOpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
def sync_client(http, live_server_url, key):
    """The synchronous client; call it in a thread (``asyncio.to_thread``): the tests' loop must go on."""
    with openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0, timeout=20) as sdk:
        yield sdk
