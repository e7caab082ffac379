"""Backends for the program library (radixgen.examples): the session's in-process engine and its
server process, both from tests/conftest.py."""
from __future__ import annotations

import pytest

from radixgen.frontend import EngineBackend, RuntimeEndpoint
from radixgen.frontend.backend import as_backend


@pytest.fixture(scope="session")
def engine_backend(engine) -> EngineBackend:
    """The session's in-process engine (tests/conftest.py)."""
    return as_backend(engine)


@pytest.fixture(scope="session")
def http_backend(server) -> RuntimeEndpoint:
    """The session's server process (tests/conftest.py), over HTTP."""
    backend = RuntimeEndpoint(server.url, api_key=server.api_key)
    yield backend
    backend.close()


@pytest.fixture(params=["engine", "http"])
def backend(request):
    """Each program test runs on both backends."""
    return request.getfixturevalue(f"{request.param}_backend")
