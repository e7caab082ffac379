"""The program library on both backends: the in-process Engine and a live HTTP server."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import re

import jsonschema
import pytest

import radixgen.frontend as sgl
from radixgen.frontend import EngineBackend
import radixgen.examples as P

GREEDY = {"temperature": 0}


def test_few_shot_run_batch(backend):
    questions = [f"What is the capital of {country}?" for country, _ in P.CAPITALS[:4]]
    states = P.few_shot_qa.run_batch([{"question": q} for q in questions], backend=backend, **GREEDY)
    assert [s.error() for s in states] == [None] * 4
    answers = [s["answer"].strip() for s in states]
    assert answers[0] == "Paris"  # France is not among the shots
    assert sum(a == city for a, (_, city) in zip(answers, P.CAPITALS)) >= 3
    for s in states:
        assert s.text().endswith("A:" + s["answer"]) and "\n" not in s["answer"]
        assert s.get_meta_info("answer")["completion_tokens"] <= 8


@pytest.mark.parametrize("program", [P.chat_roles, P.chat_scopes], ids=["expressions", "scopes"])
def test_multi_turn_chat(backend, program):
    s = program.run(question="What is the capital of France?", backend=backend, **GREEDY)
    assert s.error() is None
    roles = [m["role"] for m in s.messages()]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert s.messages()[2]["content"] == s["answer_1"] and s.messages()[4]["content"] == s["answer_2"]
    assert "Paris" in s["answer_1"]
    # the model's own chat template decided the text: rendering the turns gives it back
    assert backend.tokenizer.apply_chat_template(s.messages(), tokenize=False) == s.text()


def test_both_role_syntaxes_give_the_same_text(engine_backend):
    a = P.chat_roles.run(question="Name a colour.", backend=engine_backend, **GREEDY)
    b = P.chat_scopes.run(question="Name a colour.", backend=engine_backend, **GREEDY)
    assert a.text() == b.text()


def test_select(backend):
    s = P.capital_select.run(country="France", backend=backend)
    assert s["city"] == " Paris" and s.text().endswith("A: Paris")
    meta = s.get_meta_info("city")
    assert len(meta["normalized_prompt_logprobs"]) == 4
    assert max(meta["normalized_prompt_logprobs"]) == meta["normalized_prompt_logprobs"][0]
    for method in (sgl.greedy_token_selection, sgl.unconditional_likelihood_normalized):
        assert P.capital_select.run(country="France", method=method, backend=backend)["city"] == " Paris"


def test_typed_gens_parse(backend):
    """Each output is what its constraint allows (a broken constraint fails here, never xfails)."""
    s = P.typed_gens.run(backend=backend, **GREEDY)
    assert s.error() is None
    assert re.fullmatch(r"[-+]?\d+", s["legs"]) and int(s["legs"]) >= 0
    jsonschema.validate(json.loads(s["person"]), P.PERSON_SCHEMA)
    assert re.fullmatch(P.IP_REGEX, s["ip"]) and ipaddress.ip_address(s["ip"])


def test_fork_then_join(backend):
    s = P.tips.run(topic="sleeping well", backend=backend, **GREEDY)
    assert s.error() is None
    tips = s["tip"]
    assert isinstance(tips, list) and len(tips) == 2 and all(tips)
    assert len(s.get_meta_info("tip")) == 2
    assert f"Tip 1:{tips[0]}\nTip 2:{tips[1]}" in s.text()
    for meta in s.get_meta_info("tip"):  # the children found the parent's text in the cache
        assert meta["cached_tokens"] >= meta["prompt_tokens"] - 8


def test_streaming_text_iter(backend):
    s = P.chat_roles.run(question="Tell me about cats.", stream=True, backend=backend, **GREEDY)
    pieces = list(s.text_iter())
    assert len(pieces) > 5 and "".join(pieces) == s.text()
    s = P.chat_roles.run(question="Tell me about cats.", stream=True, backend=backend, **GREEDY)
    answer = list(s.text_iter("answer_1"))
    assert len(answer) > 3 and "".join(answer) == s["answer_1"]

    async def collect() -> list[str]:
        s = P.few_shot_qa.run(question="What is the capital of France?", stream=True, backend=backend, **GREEDY)
        return [piece async for piece in s.text_async_iter("answer")]
    assert "".join(asyncio.run(collect())).strip() == "Paris"


def test_react_loop(backend):
    s = P.react.run(question="What is the capital of France?", backend=backend, **GREEDY)
    assert s.error() is None
    assert s["action"] in (" Search", " Finish") and 1 <= s["steps"] <= 3
    assert "Thought 1:" in s.text() and "Action 1:" in s.text()
    if s["steps"] > 1 or s["action"] == " Search":
        assert "Observation 1: " in s.text()


def test_error_stays_in_its_program(backend):
    states = P.fails_on_bad.run_batch([{"x": "1"}, {"x": "bad"}, {"x": "3"}], backend=backend, max_tokens=3)
    assert isinstance(states[1].error(), ValueError) and "bad input" in str(states[1].error())
    assert states[0].error() is None and states[2].error() is None and states[2]["next"]
    s = P.nested_roles.run(backend=backend)
    assert isinstance(s.error(), ValueError) and "inside the open user turn" in str(s.error())
    with pytest.raises(RuntimeError, match="failed first"):
        s["never"]


def test_shared_preamble_computed_once(backend):
    """64 programs share ~450 tokens: run_batch prefills them once, every program then hits the cache."""
    assert backend.flush_cache()
    before = backend.engine.get_stats() if isinstance(backend, EngineBackend) else None
    questions = [f"What is the capital of {c}? Question {i}." for i in range(8) for c, _ in P.CAPITALS]
    states = P.long_preamble_qa.run_batch([{"question": q} for q in questions], backend=backend, **GREEDY)
    assert len(states) == 64 and all(s.error() is None for s in states)
    preamble = len(backend.tokenizer.encode(P.LONG_PREAMBLE))
    metas = [s.get_meta_info("answer") for s in states]
    assert all(m["cached_tokens"] >= preamble - 2 for m in metas), [m["cached_tokens"] for m in metas]
    if before is not None:
        computed = backend.engine.get_stats()["prefill_tokens_computed"] - before["prefill_tokens_computed"]
        own = sum(m["prompt_tokens"] - m["cached_tokens"] for m in metas)
        # the preamble (with the few tokens all questions start with) once, then each program's own part
        assert computed <= preamble + own + 32
        backend.engine.check()


@sgl.function
def sglang_shapes(s):
    """SGLang's test_decode_int and test_regex, as its test_programs.py writes them."""
    s += "The number of hours in a day is " + sgl.gen_int("hours") + "\n"
    s += "Q: What is the IP address of the Google DNS servers?\nA: "
    s += sgl.gen("ip", regex=r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)")


def test_sglang_int_ends_and_dot_regex_compiles(backend):
    """A number may end in a newline (SGLang's REGEX_INT), which the stop trims: the model ends it
    instead of writing digits to max_tokens. A regex with `.` (which can produce every control byte
    but a newline) compiles, and the output matches it."""
    s = sglang_shapes.run(backend=backend, **GREEDY)
    assert s.error() is None, s.error()
    assert re.fullmatch(r"[-+]?\d+", s["hours"]) and s.get_meta_info("hours")["finish_reason"]["type"] == "stop"
    assert re.fullmatch(r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)", s["ip"])
