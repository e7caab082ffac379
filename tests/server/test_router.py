"""radixgen behind SGLang's router (sglang-router, the real Rust binary): two `radixgen serve`
workers and the router as real processes on 127.0.0.1, every route kind through it with the real
`openai` client and httpx. The router is the `router` extra; where its binary cannot run, the
tests that need it skip saying so."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from radixgen.runtime.server.dp import INSTALL_HINT, router_available
from radixgen.runtime.server.launch import ServerProcess, free_port, launch_server

needs_router = pytest.mark.skipif(not router_available(),
                                  reason=f"sglang-router's binary cannot run here ({INSTALL_HINT})")
KEY = "router-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def wait_answering(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    """Until `url`/v1/models lists a model (through the router: a worker is registered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            if httpx.get(url + "/v1/models", headers=AUTH, timeout=2).json().get("data"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not answering after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The several-hosts form by hand: two workers started on their own, then the router given
    their URLs (README "Scale-out"). -> the router's URL."""
    if not router_available():
        pytest.skip(f"sglang-router's binary cannot run here ({INSTALL_HINT})")
    tmp = tmp_path_factory.mktemp("routed")
    flags = ["--num-threads", "1", "--max-total-tokens", "8000", "--api-key", KEY]
    workers: list[ServerProcess] = []
    try:
        for i in range(2):
            workers.append(launch_server(flags, tmp / f"worker{i}.log"))
        port, log = free_port(), tmp / "router.log"
        cmd = [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
               "--worker-urls", *[w.url for w in workers], "--policy", "cache_aware", "--api-key", KEY,
               "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]
        with open(log, "wb") as out:
            router = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_answering(url, router, log, timeout=60)
            yield url
        finally:
            stop(router)
    finally:
        for w in workers:
            w.stop()


@pytest.fixture(scope="module")
def oai(routed: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=routed + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.mark.slow
def test_chat_and_completions(oai: openai.OpenAI) -> None:
    chat = oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "Name a fruit."}],
                                       max_tokens=8, temperature=0)
    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
    comp = oai.completions.create(model="default", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert comp.choices[0].text and comp.usage.prompt_tokens > 0


@pytest.mark.slow
def test_streams(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi!"}],
                                              max_tokens=8, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices[-1].finish_reason in ("stop", "length")
    pieces = list(oai.completions.create(model="default", prompt="Once upon a time", max_tokens=6, stream=True))
    assert "".join(p.choices[0].text for p in pieces)


@pytest.mark.slow
def test_json_schema(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "A person as JSON."}], max_tokens=64, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)


@pytest.mark.slow
def test_native_generate(routed: str) -> None:
    body = {"text": "Count: 1, 2,", "sampling_params": {"max_new_tokens": 6, "temperature": 0, "regex": "[0-9, ]+"}}
    out = httpx.post(routed + "/generate", headers=AUTH, json=body, timeout=120).json()
    assert out["text"] and set(out["text"]) <= set("0123456789, ") and out["meta_info"]["completion_tokens"] > 0
    lines = []
    with httpx.stream("POST", routed + "/generate", headers=AUTH, json={**body, "stream": True}, timeout=120) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["text"] == out["text"]  # greedy: the same


@pytest.mark.slow
def test_auth_and_errors_pass_through(routed: str) -> None:
    assert httpx.post(routed + "/generate", json={"text": "Hi"}, timeout=30).status_code == 401  # no key
    bad = httpx.post(routed + "/generate", headers=AUTH, timeout=30,
                     json={"text": "Hi", "sampling_params": {"regex": "(", "max_new_tokens": 4}})
    assert bad.status_code == 400 and "regex" in bad.text  # the worker's message, through the router


@pytest.mark.slow
def test_cache_aware_routing_reuses_a_prefix(routed: str) -> None:
    """Requests sharing a long prefix go to the worker that holds it: each after the first is cached."""
    prefix = "Rules: " + " ".join(f"rule {i} says to be brief and kind." for i in range(40))
    cached = []
    for q in range(4):
        body = {"text": f"{prefix}\nQuestion {q}: what is rule {q}?", "sampling_params": {"max_new_tokens": 2}}
        cached.append(httpx.post(routed + "/generate", headers=AUTH, json=body, timeout=120).json()["meta_info"]["cached_tokens"])
    assert all(c > 200 for c in cached[1:]), cached
