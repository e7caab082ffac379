"""radixgen.ray.RadixgenPredictor in a real Ray Data pipeline on a local Ray instance (2 CPUs): one
actor (2 cores: concurrency 1), the bundled model, rows with prompts or chats and their own
sampling parameters; outputs equal a direct Engine run of the same batch (greedy)."""
from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from radixgen.ray import RadixgenPredictor, plain, row_params

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
DEFAULTS = {"temperature": 0, "max_new_tokens": 12}
ROWS = [
    {"id": 0, "prompt": "The capital of France is", "messages": None, "sampling_params": None},
    {"id": 1, "prompt": None, "messages": [{"role": "user", "content": "Name a fruit."}], "sampling_params": None},
    {"id": 2, "prompt": "Count: 1, 2, 3,", "messages": None, "sampling_params": {"max_new_tokens": 3}},
    # a schema travels as a JSON string: Arrow would merge the rows' dicts into one struct type
    {"id": 3, "prompt": None, "messages": [{"role": "user", "content": "Describe a person as JSON."}],
     "sampling_params": {"json_schema": json.dumps(PERSON), "max_new_tokens": 64}},
    {"id": 4, "prompt": "Three colours, one a line:\n", "messages": None, "sampling_params": {"stop": ["\n"]}},
    {"id": 5, "prompt": "My phone number is", "messages": None, "sampling_params": {"regex": "[0-9]{4}"}},
    {"id": 6, "prompt": "Hi", "messages": None, "sampling_params": {"regex": "("}},  # refused: the others still run
]


def test_row_params_drop_what_arrow_filled_in() -> None:
    row = {"sampling_params": {"max_new_tokens": np.float64(3.0), "stop": np.array(["\n"], dtype=object),
                               "regex": None, "seed": float("nan"), "temperature": 0.5}}
    assert row_params(row) == {"max_new_tokens": 3, "stop": ["\n"], "temperature": 0.5}
    assert type(row_params(row)["max_new_tokens"]) is int
    assert row_params({"sampling_params": None}) == {}
    assert plain(np.array([{"role": "user", "content": "x"}], dtype=object)) == [{"role": "user", "content": "x"}]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'radixgen[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 ** 2, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_predictor_in_ray_data_matches_the_engine(ray_local, engine) -> None:
    ds = ray_local.data.from_items(ROWS)
    out = ds.map_batches(RadixgenPredictor, batch_size=len(ROWS), concurrency=1,
                         fn_constructor_kwargs={"sampling_params": DEFAULTS, "max_total_tokens": 30000})
    got = {row["id"]: row for row in out.take_all()}
    assert sorted(got) == [r["id"] for r in ROWS]

    engine.flush_cache()  # the same batch on a fresh cache: the same schedule, so the same greedy tokens
    prompts = [engine.tokenizer.encode(r["prompt"]) if r["prompt"] else engine.apply_chat_template(r["messages"])
               for r in ROWS]
    direct = engine.generate(input_ids=prompts, sampling_params=[{**DEFAULTS, **(r["sampling_params"] or {})} for r in ROWS])
    for row, want in zip(ROWS[:-1], direct):
        have = got[row["id"]]
        assert have["generated_text"] == want["text"], row
        assert have["prompt_tokens"] == want["meta_info"]["prompt_tokens"] and have["error"] is None
        assert have["finish_reason"] in ("stop", "length")
        assert plain(have["messages"]) == row["messages"] and have["prompt"] == row["prompt"]  # carried through
    assert got[6]["finish_reason"] == "abort" and "invalid regex" in got[6]["error"]
    assert got[2]["completion_tokens"] == 3 and got[2]["finish_reason"] == "length"  # its own max_new_tokens
    assert got[0]["completion_tokens"] <= DEFAULTS["max_new_tokens"]
    jsonschema.validate(json.loads(got[3]["generated_text"]), PERSON)
    assert "\n" not in got[4]["generated_text"]
    assert len(got[5]["generated_text"]) == 4 and got[5]["generated_text"].isdigit()


@pytest.mark.slow
def test_ray_http_request_stage_against_radixgen_serve(ray_local, server) -> None:
    """The HTTP form: Ray Data's own HTTP request stage (ray.data.llm) posting to `radixgen serve`
    (here the session's server; `radixgen serve --dp N` behind its router takes the same URL)."""
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    config = HttpRequestProcessorConfig(url=server.url + "/v1/chat/completions", concurrency=1, batch_size=4,
                                        headers={"Authorization": f"Bearer {server.api_key}"})
    processor = build_processor(
        config,
        preprocess=lambda row: {"payload": {"model": "default", "max_tokens": 8, "temperature": 0,
                                            "messages": [{"role": "user", "content": f"What is {row['id']} + 1?"}]}},
        postprocess=lambda row: {"answer": row["http_response"]["choices"][0]["message"]["content"],
                                 "tokens": row["http_response"]["usage"]["completion_tokens"]})
    rows = processor(ray_local.data.range(4)).take_all()
    assert len(rows) == 4 and all(r["answer"] and 0 < r["tokens"] <= 8 for r in rows)
