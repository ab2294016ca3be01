import pytest

from tests import loopback_guard

loopback_guard.install()


@pytest.fixture(scope="session")
def emulator_server():
    from tests.emulator.server import EmulatorServer

    server = EmulatorServer().start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server):
    """The running emulator, with its request record and fault counters cleared for this test."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()
