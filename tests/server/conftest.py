"""Clients of the session's one real server (the `server` fixture of tests/conftest.py: the bundled
model, a small KV pool, an API key), talked to over HTTP by httpx and `openai`."""
from __future__ import annotations

import time
from typing import Callable

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from radixgen.runtime.server.launch import ServerProcess

AUTH = {"Authorization": "Bearer test-key"}  # the session server's key (tests/conftest.py)


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def oai(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=120)


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
