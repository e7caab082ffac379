"""/health tells the truth (issue 14): 503 once the engine loop has died or stalled, and every
caller then gets a 503 at once instead of hanging. The faults are injected into a real engine
(tiny model), so the server runs in this process: uvicorn on a loopback port, in a thread."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

import radixgen
from radixgen.runtime.server import ServerConfig, create_app
from radixgen.runtime.server.launch import free_port

pytestmark = pytest.mark.slow  # starts a server process or a uvicorn thread of its own


class Fatal(BaseException):
    """What no `except Exception` catches."""


@pytest.fixture
def live(tiny_dir):
    """(engine, base url) of a server on a fresh tiny engine; the engine is broken by the tests."""
    engine = radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=2000, context_length=256)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, ServerConfig(health_stall_s=1.0)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield engine, url
    server.should_exit = True
    thread.join(10)
    engine.shutdown()


def wait_for_status(url: str, status: int, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url + "/health", timeout=5)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_a_dead_engine_loop_turns_health_and_every_route_to_503(live, monkeypatch):
    engine, url = live
    assert httpx.post(url + "/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}}).status_code == 200

    def step():
        raise Fatal("injected")

    monkeypatch.setattr(engine.core, "step", step)
    r = wait_for_status(url, 503)
    assert r.status_code == 503 and "Fatal" in r.json()["error"]["message"]
    start = time.monotonic()
    for path, body in (("/generate", {"text": "hi"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
        answer = httpx.post(url + path, json=body, timeout=30)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "engine_unavailable", answer.text
    assert httpx.get(url + "/server_info", timeout=30).status_code == 503
    assert time.monotonic() - start < 10  # answered, not left waiting


def test_a_stalled_engine_loop_fails_health_after_the_stall_limit(live, monkeypatch):
    engine, url = live
    release = threading.Event()
    real_step = engine.core.step

    def stuck():
        release.wait(30)  # a step that does not come back (a hung kernel, a deadlock)
        return real_step()

    monkeypatch.setattr(engine.core, "step", stuck)
    r = wait_for_status(url, 503, timeout=10)
    assert r.status_code == 503 and "has not gone round" in r.json()["error"]["message"]
    release.set()
    assert wait_for_status(url, 200).status_code == 200  # back once the loop goes round again
