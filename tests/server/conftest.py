"""One real server per test session: `python -m radixgen.runtime.server` on a free loopback port,
with the bundled model in bf16 and a small KV pool, talked to over HTTP by httpx and `openai`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_BODY_BYTES = 256 * 1024
ENGINE_FLAGS = ["--dtype", "bfloat16", "--max-total-tokens", "20000"]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log_path: Path
    api_key: str | None = None
    max_body_bytes: int | None = None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log_path: Path, *flags: str, timeout: float = 180.0) -> Server:
    """Start the server and wait for /health. Its output goes to a file: a pipe nobody reads would
    fill up and block the server."""
    port = free_port()
    cmd = [sys.executable, "-m", "radixgen.runtime.server", "--port", str(port), "--log-format", "text",
           *ENGINE_FLAGS, *flags]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"the server did not come up in {timeout}s:\n{server.log_tail()}")


def stop_server(server: Server, timeout: float = 30.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = start_server(tmp_path_factory.mktemp("server") / "server.log", "--api-key", API_KEY,
                       "--max-body-bytes", str(MAX_BODY_BYTES))
    srv.api_key, srv.max_body_bytes = API_KEY, MAX_BODY_BYTES
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def client(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def oai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def wait_idle(client: httpx.Client, timeout: float = 30.0) -> dict:
    """Poll /server_info until nothing runs or waits; -> its stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = client.get("/server_info").json()["stats"]
        if stats["num_running"] == 0 and stats["num_waiting"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine is not idle after {timeout}s: {stats}")
        time.sleep(0.2)


def check_kv_released(stats: dict) -> None:
    """Once idle, every KV slot is free or held (unlocked) by the prefix cache."""
    assert stats["kv_locked"] == 0, stats
    assert stats["kv_free"] + stats["kv_evictable"] == stats["kv_capacity"], stats


@pytest.fixture
def assert_idle(client: httpx.Client) -> Callable[..., dict]:
    def check(timeout: float = 30.0) -> dict:
        stats = wait_idle(client, timeout)
        check_kv_released(stats)
        return stats
    return check


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample in /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def metric(client: httpx.Client) -> Callable[..., float]:
    return lambda name, **labels: metric_value(client, name, **labels)
