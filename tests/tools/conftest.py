import pytest


@pytest.fixture
def loopback_mcp(settings):
    """Allow MCP servers on 127.0.0.1 (the emulator's); every other private address stays refused."""
    settings.QALBY_MCP_ALLOWED_HOSTS = ["127.0.0.1"]
