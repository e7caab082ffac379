"""The language and its interpreter on a recording fake backend: no model, milliseconds per test."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

import radixgen.frontend as sgl
from radixgen.frontend.backend import Backend
from radixgen.frontend.chat_template import RoleTemplate
from radixgen.frontend.interpreter import split_reasoning
from radixgen.frontend.program import trace_prefix
from radixgen.runtime.sampling_params import SamplingParams

CHATML = RoleTemplate(prefix={r: f"<|im_start|>{r}\n" for r in ("system", "user", "assistant")},
                      suffix={r: "<|im_end|>\n" for r in ("system", "user", "assistant")}, default_system=None)


class FakeBackend(Backend):
    """Answers "<n>" for the n-th request and records each request's prompt and params."""

    def __init__(self, delay: float = 0.0):
        self.tokenizer, self.template, self.delay = None, CHATML, delay
        self.calls: list[tuple[Any, SamplingParams]] = []
        self.lock = threading.Lock()

    def _generate(self, prompts, params):
        time.sleep(self.delay)
        with self.lock:
            out = []
            for prompt, p in zip(prompts, params):
                self.calls.append((prompt, p))
                text = "" if p.max_new_tokens == 0 else f"<{len(self.calls)}>"
                out.append({"text": text, "meta_info": {"prompt": prompt}})
            return out

    def _generate_stream(self, prompt, params) -> Iterator[dict[str, Any]]:
        self.calls.append((prompt, params))
        for word in ["one", " two", " three"]:
            time.sleep(self.delay)
            yield {"text": word, "meta_info": {}}

    def flush_cache(self) -> bool:
        return True


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@sgl.function
def two_gens(s):
    s += "A:" + sgl.gen("a")
    s += " B:" + sgl.gen("b", temperature=0.1, max_new_tokens=3, stop=".")


def test_run_defaults_flow_to_each_gen_and_a_gen_overrides(fake):
    s = two_gens.run(backend=fake, temperature=0.5, max_tokens=7, top_p=0.9)
    assert s.text() == "A:<1> B:<2>" and s["a"] == "<1>" and s["b"] == "<2>"
    (prompt_a, a), (prompt_b, b) = fake.calls
    assert prompt_a == "A:" and prompt_b == "A:<1> B:"
    assert (a.temperature, a.max_new_tokens, a.top_p, a.stop) == (0.5, 7, 0.9, [])
    assert (b.temperature, b.max_new_tokens, b.top_p, b.stop) == (0.1, 3, 0.9, ["."])


def test_bad_keywords_fail_at_the_call_that_gave_them(fake):
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        sgl.gen("x", temprature=1.0)
    with pytest.raises(ValueError, match="top_p"):
        sgl.gen("x", top_p=2.0)
    with pytest.raises(ValueError, match="fork"):
        sgl.gen("x", n=2)
    with pytest.raises(ValueError, match="unexpected argument 'questoin'"):
        two_gens.run(backend=fake, questoin="hi")
    with pytest.raises(ValueError, match="non-empty"):
        sgl.select("x", [])
    with pytest.raises(TypeError, match="cannot add a int"):
        two_gens.run(backend=fake).__iadd__(3)


def test_dtype_becomes_a_regex(fake):
    @sgl.function
    def typed(s):
        s += sgl.gen_int("n", stop="!") + sgl.gen("f", dtype=float) + sgl.gen_string("q") + sgl.gen("b", dtype=bool)
    typed.run(backend=fake)
    regexes = [p.regex for _, p in fake.calls]
    # SGLang's own regexes (sglang/lang/ir.py): numbers may end in spaces/newlines, which stop trims
    assert regexes == [sgl.ir.REGEX_INT, sgl.ir.REGEX_FLOAT, sgl.ir.REGEX_STR, sgl.ir.REGEX_BOOL]
    assert sgl.ir.REGEX_INT == r"[-+]?[0-9]+[ \n]*"
    assert fake.calls[0][1].stop == ["!", " ", "\n"]


def test_gen_takes_sglangs_positional_arguments(fake):
    @sgl.function
    def prog(s):
        s += sgl.gen("a", 5) + sgl.gen_int("b", 3) + sgl.gen_string("c", 7, stop="x")
    prog.run(backend=fake)
    assert [p.max_new_tokens for _, p in fake.calls] == [5, 3, 7]
    with pytest.raises(ValueError, match="stop_regex is not supported"):
        sgl.gen("a", stop_regex=r"\d")


def test_fork_item_add_in_place_as_sglang_writes_it(fake):
    @sgl.function
    def prog(s):
        s += "Start."
        forks = s.fork(2)
        for i in range(2):
            forks[i] += f" Branch {i}:"  # Python: forks[i] = forks[i].__iadd__(...)
            forks[i] += sgl.gen("v")
        forks.join()
        with pytest.raises(TypeError, match="cannot be replaced"):
            forks[0] = forks[1]
    s = prog.run(backend=fake)
    assert s.error() is None and sorted(p for p, _ in fake.calls[1:]) == ["Start. Branch 0:", "Start. Branch 1:"]


class AnswerBackend(FakeBackend):
    """Answers every request with `answer`, its meta info `meta`."""

    def __init__(self, answer: str, meta: dict[str, Any] | None = None):
        super().__init__()
        self.answer, self.meta = answer, meta or {}

    def _generate(self, prompts, params):
        return [{"text": self.answer, "meta_info": dict(self.meta)} for _ in prompts]


def test_separate_reasoning_splits_the_variable_and_the_text():
    @sgl.function
    def prog(s):
        s += "Q:" + sgl.separate_reasoning(sgl.gen("a"), model_type="qwen3") + "|"
    s = prog.run(backend=AnswerBackend("<think>first, plan</think> Paris"))
    assert (s["a"], s["a_reasoning_content"], s.text()) == ("Paris", "first, plan", "Q:Paris|")
    assert split_reasoning("no tags") == ("", "no tags")
    assert split_reasoning("<think>cut short") == ("cut short", "")
    assert split_reasoning("R1 opens it in the prompt</think>ok") == ("R1 opens it in the prompt", "ok")
    with pytest.raises(ValueError, match="named gen"):
        sgl.separate_reasoning(sgl.gen())


def test_an_aborted_request_fails_its_program_with_the_reason():
    backend = AnswerBackend("", {"finish_reason": {"type": "abort", "message": "bad regex: x"}})

    @sgl.function
    def prog(s):
        s += sgl.gen("a", regex="x")
    states = prog.run_batch([{}], backend=backend)
    assert isinstance(states[0].error(), ValueError) and "bad regex: x" in str(states[0].error())


def test_images_are_refused_with_a_message():
    with pytest.raises(ValueError, match="text-only"):
        sgl.image("cat.png")
    with pytest.raises(ValueError, match="text-only"):
        sgl.video("cat.mp4", 4)


def test_global_config_and_sglang_function_options(fake):
    sgl.global_config.default_backend = fake
    try:
        assert sgl.get_default_backend() is fake and sgl.global_config.default_backend is fake

        @sgl.function(num_api_spec_tokens=64)  # an API-backend option: accepted, nothing to do here
        def prog(s, x):
            s += x + sgl.gen("y")
        states = prog.run_batch([{"x": str(i)} for i in range(5)], generator_style=True)
        assert not isinstance(states, list)
        assert [st.text()[0] for st in states] == list("01234")  # input order
    finally:
        sgl.set_default_backend(None)
    assert sgl.global_config.default_backend is None


def test_roles_both_syntaxes_and_messages(fake):
    @sgl.function
    def chat(s, scoped):
        if scoped:
            with s.user():
                s += "hi"
            s.assistant(sgl.gen("x"))
        else:
            s += sgl.user_begin() + "hi" + sgl.user_end()
            s += sgl.assistant("" + sgl.gen("x"))
    a, b = chat.run(scoped=True, backend=fake), chat.run(scoped=False, backend=FakeBackend())
    assert a.text() == b.text() == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<1><|im_end|>\n"
    assert a.messages() == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<1>"}]


def test_default_system_turn_is_added_like_the_template(fake):
    fake.template = RoleTemplate(CHATML.prefix, CHATML.suffix, default_system="Be nice.")
    s = sgl.function(lambda s: s.__iadd__(sgl.user("hi"))).run(backend=fake)
    assert s.messages() == [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}]


def test_fork_commits_the_prefix_then_join_gathers(fake):
    @sgl.function
    def branches(s):
        s += "Start."
        forks = s.fork(3)
        forks += lambda i: f" Branch {i}:" + sgl.gen("v")
        forks.join()
        s += " End."
    s = branches.run(backend=fake)
    prompt, params = fake.calls[0]
    assert prompt == "Start." and params.max_new_tokens == 0  # the commit, before any child's request
    assert sorted(s["v"]) == ["<2>", "<3>", "<4>"] and s.text() == "Start. End."
    assert sorted(p for p, _ in fake.calls[1:]) == [f"Start. Branch {i}:" for i in range(3)]


def test_forks_run_in_parallel():
    slow = FakeBackend(delay=0.3)

    @sgl.function
    def branches(s):
        forks = s.fork(4)
        for f in forks:  # the loop only queues: the four requests overlap
            f += sgl.gen("v")
        forks.join("concate_and_append")
    start = time.perf_counter()
    s = branches.run(backend=slow)
    assert time.perf_counter() - start < 0.9 and sorted(s.text()) == sorted("<1><2><3><4>")


def test_run_batch_precaches_the_common_prefix_and_keeps_errors(fake):
    @sgl.function
    def qa(s, q):
        s += "P" * 100 + " Q: " + q
        if q == "bad":
            raise KeyError("no such question")
        s += sgl.gen("a", max_tokens=2)
    states = qa.run_batch([{"q": "one"}, {"q": "bad"}, ("three",)], backend=fake, progress_bar=False)
    assert fake.calls[0][0] == "P" * 100 + " Q: " and fake.calls[0][1].max_new_tokens == 0
    assert isinstance(states[1].error(), KeyError) and states[0].error() is None and states[2]["a"]
    assert all(p.max_new_tokens == 2 for _, p in fake.calls[1:])


def test_trace_stops_at_the_first_model_call(fake):
    def prog(s, x):
        s += sgl.system("sys") + "x=" + x
        s += sgl.gen("y")
        s += "never"
    assert trace_prefix(prog, {"x": "1"}, fake) == "<|im_start|>system\nsys<|im_end|>\nx=1"
    assert fake.calls == []


def test_streaming_yields_pieces_as_they_come():
    slow = FakeBackend(delay=0.05)

    @sgl.function
    def story(s):
        s += "Once:" + sgl.gen("tale")
    s = story.run(stream=True, backend=slow)
    pieces = list(s.text_iter())  # a busy machine may merge pieces, never lose or reorder them
    assert "".join(pieces) == "Once:one two three" and len(pieces) >= 3
    s = story.run(stream=True, backend=FakeBackend(delay=0.05))
    pieces = list(s.text_iter("tale"))
    assert "".join(pieces) == s["tale"] == "one two three" and len(pieces) >= 2


def test_var_scope_and_bind(fake):
    @sgl.function
    def prog(s, a, b):
        with s.var_scope("both"):
            s += a + b
    assert prog.bind(a="x").run(b="y", backend=fake)["both"] == "xy"


def test_choice_methods_on_known_logprobs():
    kw = dict(choices=["a", "bb"], output_token_logprobs=[[], []])
    short, long_ = [[-1.0, 1, "a"]], [[-0.5, 2, "b"], [-2.0, 3, "b"]]
    assert sgl.token_length_normalized(normalized_prompt_logprobs=[-1.0, -1.25],
                                       input_token_logprobs=[short, long_], **kw).decision == "a"
    assert sgl.greedy_token_selection(normalized_prompt_logprobs=[-1.0, -1.25],
                                      input_token_logprobs=[short, long_], **kw).decision == "bb"
    uncond = [[[None, 1, "a"]], [[None, 2, "b"], [-3.0, 3, "b"]]]
    picked = sgl.unconditional_likelihood_normalized(normalized_prompt_logprobs=[-1.0, -1.25],
                                                     input_token_logprobs=[short, long_],
                                                     unconditional_token_logprobs=uncond, **kw)
    assert picked.decision == "bb"  # (-0.5 + 1.0) / 2 beats -1.0


def test_cache_prefills_the_text_before_the_first_input(fake):
    @sgl.function
    def qa(s, question, style):
        s += "You answer questions about geography, in one word, without any punctuation. "
        s += "Q: " + question + sgl.gen("a")
    qa.cache(backend=fake)
    (prompt, params), = fake.calls
    # "Q: " + question reads the input: the trace ends before that expression is added
    assert prompt == "You answer questions about geography, in one word, without any punctuation. "
    assert params.max_new_tokens == 0


def test_copy_is_a_fork_of_one_joined_on_exit(fake):
    @sgl.function
    def prog(s):
        s += "Base."
        with s.copy() as c:
            c += " more" + sgl.gen("x")
        s += " After."
    s = prog.run(backend=fake)
    assert s.text() == "Base. After." and s["x"] == ["<1>"] and fake.calls[0][0] == "Base. more"
