"""Backends for the program library: the session's in-process engine, and a live HTTP server
(`python -m radixgen.runtime.server`) started once in a subprocess when the server exists."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

import radixgen
from radixgen.frontend import EngineBackend, RuntimeEndpoint
from radixgen.frontend.backend import as_backend
from radixgen.runtime.sampling_params import SamplingParams

SERVER_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server_url():
    if importlib.util.find_spec("radixgen.runtime.server.__main__") is None:
        pytest.skip("the HTTP server (radixgen.runtime.server) is not there yet")
    port = _free_port()
    cmd = [sys.executable, "-m", "radixgen.runtime.server", "--port", str(port), "--dtype", "bfloat16",
           "--max-total-tokens", "20000", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /health within {SERVER_START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def engine_bf16():
    """bfloat16: programs decode at large batches, where bf16 is several times faster than float32 here."""
    with radixgen.Engine(dtype="bfloat16", max_total_tokens=30000) as engine:
        yield engine


@pytest.fixture(scope="session")
def engine_backend(engine_bf16) -> EngineBackend:
    return as_backend(engine_bf16)


@pytest.fixture(scope="session")
def http_backend(server_url) -> RuntimeEndpoint:
    backend = RuntimeEndpoint(server_url)
    yield backend
    backend.close()


@pytest.fixture(params=["engine", "http"])
def backend(request):
    """Each program test runs on both backends."""
    return request.getfixturevalue(f"{request.param}_backend")


_constrained: dict[int, bool] = {}


@pytest.fixture
def constrained(backend) -> bool:
    """Whether this backend's engine honours `regex` yet (constrained decoding is wired separately)."""
    if id(backend) not in _constrained:
        text, _ = backend.generate("My favourite number is", SamplingParams(regex="[0-9]{3}", max_new_tokens=6,
                                                                           temperature=0.0))
        _constrained[id(backend)] = len(text) == 3 and text.isdigit()
    return _constrained[id(backend)]
