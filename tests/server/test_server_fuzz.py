"""Fuzzing the request bodies of /generate, /v1/completions and /v1/chat/completions (issue 14):
random types, sizes, ranges and nesting, a bounded number of examples, against a real server on the
tiny model. Every answer is a 200 or a 4xx with an error body; afterwards the engine still
generates and the KV accounting holds (free + evictable = capacity, nothing locked)."""
from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixgen.runtime.server.launch import launch_server

pytestmark = pytest.mark.slow  # starts a server process or a uvicorn thread of its own

EXAMPLES = 60  # per route; derandomized, so CI runs the same bodies each time

junk = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
# In-range values, so that most bodies reach the engine; `spoil` then swaps one field for junk.
count = st.integers(0, 6)
prob = st.floats(0.05, 1.0)
text = st.text(max_size=40)
token_ids = st.lists(st.integers(0, 49151), min_size=1, max_size=6)
logit_bias = st.dictionaries(st.integers(0, 49151).map(str), st.floats(-100, 100), max_size=3)
SAMPLING = {
    "max_new_tokens": count, "min_new_tokens": count, "temperature": st.floats(0, 2), "top_p": prob,
    "top_k": st.integers(-1, 50), "min_p": st.floats(0, 1), "frequency_penalty": st.floats(-2, 2),
    "presence_penalty": st.floats(-2, 2), "repetition_penalty": st.floats(0.5, 2), "stop": text | st.lists(text, max_size=3),
    "stop_token_ids": st.lists(st.integers(0, 49151), max_size=3), "ignore_eos": st.booleans(), "n": st.integers(1, 3),
    "seed": st.integers(-(2 ** 63), 2 ** 64 - 1), "regex": st.sampled_from(["[0-9]{2}", "(yes|no)", "a*b?"]),
    "json_schema": st.sampled_from(['{"type": "integer"}', '{"type": "object", "properties": {"a": {"type": "string"}}}',
                                    '{"type": "array", "items": {"type": "boolean"}, "uniqueItems": true}']),
    "logit_bias": logit_bias, "skip_special_tokens": st.booleans(), "no_stop_trim": st.booleans(),
    "top_logprobs_num": st.integers(0, 5), "return_logprob": st.booleans(),
}
JUNK_VALUES = junk | st.sampled_from([2 ** 31, 2 ** 64, -(2 ** 64), 10 ** 7, float("nan"), float("inf"), "[" * 5000,
                                      '{"type": "object", "properties": ', '{"not": {}}', "(", [2 ** 40], {"x": 1}])


@st.composite
def spoil(draw, bodies: st.SearchStrategy[dict]) -> dict:
    """A body from `bodies`, left whole or with one field replaced by (or added as) junk."""
    body = draw(bodies)
    if draw(st.booleans()):
        return body
    key = draw(st.sampled_from(sorted(body) + ["zz_unknown"]) if body else st.just("zz_unknown"))
    if isinstance(body.get(key), dict) and body[key] and draw(st.booleans()):
        inner = draw(st.sampled_from(sorted(body[key])))
        return {**body, key: {**body[key], inner: draw(JUNK_VALUES)}}
    return {**body, key: draw(JUNK_VALUES)}


def fields(spec: dict) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=spec)


generate_bodies = spoil(st.fixed_dictionaries(
    {"sampling_params": fields(SAMPLING)},
    optional={"text": text | st.lists(text, min_size=1, max_size=3), "stream": st.booleans(),
              "return_logprob": st.booleans(), "top_logprobs_num": st.integers(0, 5),
              "logprob_start_len": st.integers(-1, 3), "rid": st.text(min_size=1, max_size=5)}).map(
    lambda b: b if "text" in b else {**b, "input_ids": [1, 2, 3]}))
openai_common = {"max_tokens": count, "temperature": st.floats(0, 2), "top_p": prob, "n": st.integers(1, 3),
                 "stop": text | st.lists(text, max_size=3), "seed": st.integers(0, 2 ** 63), "stream": st.booleans(),
                 "logit_bias": logit_bias, "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
                 "user": text, "regex": SAMPLING["regex"], "ignore_eos": st.booleans()}
completion_bodies = spoil(st.fixed_dictionaries(
    {"prompt": text | st.lists(text, min_size=1, max_size=3) | token_ids},
    optional={**openai_common, "logprobs": st.integers(0, 5), "echo": st.booleans()}))
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]), "content": text})
chat_bodies = spoil(st.fixed_dictionaries(
    {"messages": st.lists(message, min_size=1, max_size=3)},
    optional={**openai_common, "logprobs": st.booleans(), "top_logprobs": st.integers(0, 5),
              "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"},
                                                  {"type": "json_schema", "json_schema": {"schema": {"type": "integer"}}}])}))


@pytest.fixture(scope="module")
def fuzz_server(tiny_dir, tmp_path_factory):
    with launch_server(["--model", tiny_dir, "--dtype", "float32", "--max-total-tokens", "6000",
                        "--context-length", "256", "--grammar-compile-timeout-s", "5", "--log-level", "warning"],
                       tmp_path_factory.mktemp("fuzz") / "server.log", timeout=120) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client


SEEN: dict[int, int] = {}


def check_answer(r: httpx.Response) -> None:
    SEEN[r.status_code] = SEEN.get(r.status_code, 0) + 1
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code != 200:
        assert r.json()["error"]["message"], r.text[:500]


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.mark.parametrize("route, bodies", [("/generate", generate_bodies), ("/v1/completions", completion_bodies),
                                           ("/v1/chat/completions", chat_bodies)], ids=["generate", "completions", "chat"])
def test_random_bodies_get_200_or_4xx(fuzz_server, route, bodies):
    @FUZZ
    @given(body=bodies)
    def one(body):
        # Python's encoder writes NaN / Infinity, which JSON parsers may or may not take: fuzz that too
        check_answer(fuzz_server.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"}))

    SEEN.clear()
    one()
    assert SEEN.get(200, 0) >= EXAMPLES // 4, SEEN  # most bodies must reach the engine, not just the parser
    after = fuzz_server.post("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 3}})
    assert after.status_code == 200 and len(after.json()["output_ids"]) >= 1
    stats = fuzz_server.get("/server_info").json()["stats"]
    assert stats["kv_locked"] == 0 and stats["kv_free"] + stats["kv_evictable"] == stats["kv_capacity"], stats
