"""One real server per test session: `python -m radixgen.runtime.server` on a free loopback port,
with the bundled model in bf16 and a small KV pool, talked to over HTTP by httpx and `openai`."""
from __future__ import annotations

import time
from typing import Callable

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_proc import Server, start_server, stop_server

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_BODY_BYTES = 256 * 1024


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
