"""Bad input gets a 4xx in OpenAI's error format naming the problem, and the server keeps serving.
Also: auth, the body size limit, a client that disconnects (its request aborted, its KV freed)."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "hi"}]

# (route, body, expected status, a word the error message must contain)
BAD = {
    "malformed json": ("/v1/chat/completions", b'{"messages": [', 400, "json"),
    "not an object": ("/v1/completions", b"[1, 2]", 400, "object"),
    "wrong type": ("/v1/chat/completions", {"messages": MSG, "max_tokens": "many"}, 400, "max_tokens"),
    "messages not a list": ("/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
    "missing messages": ("/v1/chat/completions", {"max_tokens": 3}, 400, "messages"),
    "missing prompt": ("/v1/completions", {"max_tokens": 3}, 400, "prompt"),
    "empty messages": ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    "negative max_tokens": ("/v1/completions", {"prompt": "a", "max_tokens": -1}, 400, "max_new_tokens"),
    "top_p over 1": ("/v1/chat/completions", {"messages": MSG, "top_p": 1.5}, 400, "top_p"),
    "n below 1": ("/v1/chat/completions", {"messages": MSG, "n": 0}, 400, "n must"),
    "too many top_logprobs": ("/v1/chat/completions", {"messages": MSG, "logprobs": True, "top_logprobs": 50},
                              400, "top_logprobs"),
    "top_logprobs alone": ("/v1/chat/completions", {"messages": MSG, "top_logprobs": 2}, 400, "logprobs"),
    "negative temperature": ("/v1/completions", {"prompt": "a", "temperature": -0.5}, 400, "temperature"),
    "bad stop type": ("/generate", {"text": "a", "sampling_params": {"stop": 5}}, 400, "stop"),
    "unknown sampling key": ("/generate", {"text": "a", "sampling_params": {"max_new_token": 3}}, 400,
                             "max_new_tokens"),
    "text and input_ids": ("/generate", {"text": "a", "input_ids": [1]}, 400, "exactly one"),
    "token id out of range": ("/generate", {"input_ids": [10 ** 9]}, 400, "input_ids"),
    "empty prompt": ("/generate", {"text": ""}, 400, "empty"),
    "prompt over the context": ("/v1/completions", {"prompt": [100] * 9000, "max_tokens": 1}, 400, "context length"),
    "unknown model": ("/v1/chat/completions", {"model": "gpt-17", "messages": MSG}, 404, "gpt-17"),
    "bad response_format": ("/v1/chat/completions", {"messages": MSG, "response_format": {"type": "xml"}},
                            400, "response_format"),
    "json_schema without schema": ("/v1/chat/completions", {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x"}}}, 400, "schema"),
    "image content": ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 400, "text"),
    "unknown route": ("/v1/embeddings", {"input": "a"}, 404, "route"),
}
GRAMMAR_BAD = {
    "invalid regex": ("/generate", {"text": "a", "sampling_params": {"regex": "(unclosed"}}, 400, "regex"),
    "unsupported schema": ("/v1/chat/completions", {"messages": MSG, "response_format": {
        # a fractional multipleOf: validators test it with float division, no regex can follow
        "type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
            "price": {"type": "number", "multipleOf": 0.01}}}}}}, 400, "multipleOf"),
}


def post(client: httpx.Client, route: str, body: dict | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post(route, content=body, headers={"Content-Type": "application/json"})
    return client.post(route, json=body)


def check_rejected_then_serving(client: httpx.Client, route: str, body: dict | bytes, status: int, word: str) -> None:
    r = post(client, route, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert {"message", "type", "param", "code"} <= error.keys()
    assert word.lower() in error["message"].lower() + str(error["param"]).lower(), error
    ok = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 1})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(client: httpx.Client, case: str) -> None:
    check_rejected_then_serving(client, *BAD[case])


@pytest.mark.parametrize("case", list(GRAMMAR_BAD))
def test_bad_grammar(client: httpx.Client, case: str) -> None:
    check_rejected_then_serving(client, *GRAMMAR_BAD[case])


def test_body_over_the_limit(client: httpx.Client, server) -> None:
    r = client.post("/v1/completions", json={"prompt": "x" * (server.max_body_bytes + 1)})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    check_rejected_then_serving(client, "/generate", {"text": "a", "input_ids": [1]}, 400, "exactly one")


def test_auth(server, client: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": server.api_key}):
        for method, path in (("GET", "/v1/models"), ("POST", "/generate"), ("GET", "/metrics"),
                             ("GET", "/server_info"), ("POST", "/flush_cache")):
            r = httpx.request(method, server.url + path, headers=headers, json={"text": "a"})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 2, "parallel_tool_calls": False,
                                                  "metadata": {"a": "b"}, "best_of": 1, "foo": [1]})
    assert r.status_code == 200
    r = client.post("/generate", json={"text": "a", "sampling_params": {"max_new_tokens": 1, "stop_regex": None},
                                       "lora_path": None, "custom": 1})
    assert r.status_code == 200


@pytest.mark.parametrize("field, value", [("tools", [{"type": "function", "function": {"name": "f"}}]),
                                          ("functions", [{"name": "f"}]), ("best_of", 3), ("suffix", "x")])
def test_fields_that_cannot_be_honoured_are_refused(client: httpx.Client, field, value) -> None:
    """A field that would change the answer is a 400 naming it, never a silent 200 (tools: on
    /v1/completions; chat completions serve them, tests/server/test_server_tools.py)."""
    route, body = (("/v1/completions", {"prompt": "a"}) if field in ("best_of", "suffix", "tools") else
                   ("/v1/chat/completions", {"messages": MSG}))
    r = client.post(route, json={**body, "max_tokens": 2, field: value})
    assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text


def test_logit_bias_is_honoured(client: httpx.Client) -> None:
    """OpenAI's logit_bias (string token ids, -100..100): +100 on one token makes greedy pick it."""
    tok = 330
    r = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 3, "temperature": 0,
                                             "logit_bias": {str(tok): 100}})
    assert r.status_code == 200, r.text
    ids = client.post("/generate", json={"text": "Hello", "sampling_params": {
        "max_new_tokens": 3, "temperature": 0, "logit_bias": {str(tok): 100}}}).json()["output_ids"]
    assert ids == [tok] * 3
    for bad in ({"49152": 1}, {"1": 101}, {"x": 1}):
        r = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 1, "logit_bias": bad})
        assert r.status_code == 400 and "logit_bias" in r.json()["error"]["message"], r.text


def test_stream_disconnect_aborts(client: httpx.Client, assert_idle, metric) -> None:
    aborted = metric("radixgen_requests_finished_total", reason="abort")
    body = {"messages": MSG, "max_tokens": 4000, "stream": True, "ignore_eos": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few events, then hang up
    assert any(line.startswith("data: ") for line in got)
    assert_idle(timeout=20)  # 4000 tokens would take minutes: it was aborted, and its KV freed
    assert metric("radixgen_requests_finished_total", reason="abort") == aborted + 1


def test_non_stream_disconnect_aborts(server, assert_idle, metric) -> None:
    aborted = metric("radixgen_requests_finished_total", reason="abort")
    body = {"text": "Tell me everything.", "sampling_params": {"max_new_tokens": 4000, "ignore_eos": True}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/generate", json=body, timeout=1.5,
                   headers={"Authorization": f"Bearer {server.api_key}"})
    assert_idle(timeout=20)
    assert metric("radixgen_requests_finished_total", reason="abort") == aborted + 1


def test_error_format_in_json(client: httpx.Client) -> None:
    """The error body is the same JSON shape everywhere, parseable by the openai client."""
    r = client.post("/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
    assert json.loads(r.text)["error"]["type"] == "invalid_request_error"
