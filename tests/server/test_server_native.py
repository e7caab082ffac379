"""SGLang's native routes: /generate (single, batch, streaming, logprobs, prefill-only) and operations."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

pytestmark = pytest.mark.slow


def sse_events(response: httpx.Response) -> list:
    """The JSON payloads of an SSE response, then the string '[DONE]' if it came."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_generate_single(client: httpx.Client) -> None:
    r = client.post("/generate", json={"text": "The capital of France is",
                                       "sampling_params": {"max_new_tokens": 6, "temperature": 0}})
    assert r.status_code == 200
    out = r.json()
    meta = out["meta_info"]
    assert out["text"] and len(out["output_ids"]) == meta["completion_tokens"] <= 6
    assert meta["finish_reason"]["type"] in ("stop", "length") and meta["prompt_tokens"] > 0
    assert {"id", "cached_tokens", "e2e_latency"} <= meta.keys()


def test_generate_batch_and_n(client: httpx.Client) -> None:
    r = client.post("/generate", json={"text": ["One, two,", "A, B,"], "sampling_params": [
        {"max_new_tokens": 3, "temperature": 0}, {"max_new_tokens": 2, "n": 2}]})
    out = r.json()
    assert isinstance(out, list) and len(out) == 3  # the second prompt sampled twice
    assert out[0]["meta_info"]["completion_tokens"] <= 3
    assert all(o["meta_info"]["completion_tokens"] <= 2 for o in out[1:])
    ids = client.post("/generate", json={"input_ids": [[504, 2988], [314]], "sampling_params": {"max_new_tokens": 2}})
    assert [o["meta_info"]["prompt_tokens"] for o in ids.json()] == [2, 1]


def test_generate_stream_with_logprobs(client: httpx.Client) -> None:
    body = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 8, "temperature": 0},
            "stream": True, "return_logprob": True, "top_logprobs_num": 2, "return_text_in_logprobs": True}
    with client.stream("POST", "/generate", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for prev, cur in zip(chunks, chunks[1:]):
        assert cur["text"].startswith(prev["text"])  # cumulative text
    lps = [e for c in chunks for e in c["meta_info"]["output_token_logprobs"]]  # new tokens only per event
    final = chunks[-1]
    assert final["meta_info"]["finish_reason"] is not None
    assert [tok for _, tok, _ in lps] == final["output_ids"]
    assert all(isinstance(text, str) for _, _, text in lps)
    plain = client.post("/generate", json={**body, "stream": False}).json()
    assert plain["text"] == final["text"] and plain["output_ids"] == final["output_ids"]


def test_logprob_text_only_when_asked(client: httpx.Client) -> None:
    out = client.post("/generate", json={"text": "Hello there friend", "return_logprob": True,
                                         "logprob_start_len": 0, "sampling_params": {"max_new_tokens": 2}}).json()
    meta = out["meta_info"]
    assert meta["input_token_logprobs"][0][0] is None  # the first prompt token has no prediction
    assert len(meta["input_token_logprobs"]) == meta["prompt_tokens"]
    assert all(text is None for _, _, text in meta["output_token_logprobs"])


def test_max_new_tokens_zero_warms_the_cache(client: httpx.Client) -> None:
    prefix = "A long shared preamble about prefix caching in radix trees. " * 4
    warm = client.post("/generate", json={"text": prefix, "sampling_params": {"max_new_tokens": 0}}).json()
    assert warm["meta_info"]["completion_tokens"] == 0 and warm["text"] == ""
    assert warm["meta_info"]["finish_reason"]["type"] == "length"
    hit = client.post("/generate", json={"text": prefix + "Question?", "sampling_params": {"max_new_tokens": 1}})
    assert hit.json()["meta_info"]["cached_tokens"] >= warm["meta_info"]["prompt_tokens"] - 1


def test_abort_request_by_rid(client: httpx.Client, assert_idle) -> None:
    result: dict = {}
    body = {"text": "Write a long story.", "rid": "abort-me",
            "sampling_params": {"max_new_tokens": 2000, "ignore_eos": True}}
    worker = threading.Thread(target=lambda: result.update(client.post("/generate", json=body).json()))
    worker.start()
    for _ in range(100):  # wait until it runs
        if client.get("/server_info").json()["stats"]["num_running"]:
            break
        threading.Event().wait(0.1)
    assert client.post("/abort_request", json={"rid": "abort-me"}).json()["success"]
    worker.join(60)
    assert result["meta_info"]["finish_reason"]["type"] == "abort"
    assert result["meta_info"]["completion_tokens"] < 2000
    assert_idle()


def test_concate_and_append_lets_sglangs_parallel_encoding_go_on(client: httpx.Client) -> None:
    """SGLang's RuntimeEndpoint calls it on join(mode="concate_and_append"); its text is appended by
    the frontend, so the route answers success and the parent's next request prefills that text."""
    body = {"src_rids": ["fork-a", "fork-b"], "dst_rid": "parent"}
    assert client.post("/concate_and_append_request", json=body).json() == {"success": True}
    assert client.post("/concate_and_append_request", json={"src_rids": "x"}).status_code == 400


def test_health_and_info(client: httpx.Client, server) -> None:
    assert httpx.get(server.url + "/health").status_code == 200  # no key needed
    assert client.get("/health_generate").status_code == 200
    for path in ("/get_model_info", "/model_info"):
        info = client.get(path).json()
        assert info["model_path"] and info["is_generation"] is True
    for path in ("/get_server_info", "/server_info"):
        info = client.get(path).json()
        assert info["api_key"] == "***" and info["dtype"] in ("auto", "bfloat16", "float32") and "kv_capacity" in info["stats"]


def test_flush_cache(client: httpx.Client, assert_idle) -> None:
    assert_idle()
    assert client.post("/flush_cache").status_code == 200
    assert client.get("/flush_cache").status_code == 200
    stats = assert_idle()
    assert stats["kv_evictable"] == 0 and stats["kv_free"] == stats["kv_capacity"]


def test_metrics(client: httpx.Client, metric) -> None:
    client.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}})
    text = client.get("/metrics").text
    for name in ("radixgen_num_running_reqs", "radixgen_num_waiting_reqs", "radixgen_kv_usage_ratio",
                 "radixgen_cache_hit_rate", "radixgen_prompt_tokens_total", "radixgen_generation_tokens_total",
                 "radixgen_e2e_request_latency_seconds_bucket", "radixgen_time_to_first_token_seconds_bucket"):
        assert name in text
    assert metric("radixgen_kv_capacity_tokens") == 20000
    assert metric("radixgen_generation_tokens_total") > 0
    assert metric("radixgen_http_requests_total", path="/generate", status="200") >= 1
