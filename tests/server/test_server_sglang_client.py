"""SGLang's own frontend drives the native API unchanged (skipped where sglang is not installed:
`pip install --no-deps sglang==0.5.10.post1` plus numpy requests tqdm pybase64 ipython pydantic aiohttp)."""
from __future__ import annotations

import re

import pytest

sgl = pytest.importorskip("sglang")
pytestmark = pytest.mark.slow


@sgl.function
def qa(s, question):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=8, temperature=0))
    s += sgl.user("Answer with yes or no.")
    s += sgl.assistant(sgl.select("verdict", choices=["yes", "no"]))


@pytest.fixture(scope="module")
def backend(server):
    return sgl.RuntimeEndpoint(server.url, api_key=server.api_key)


def test_gen_and_select(backend) -> None:
    state = qa.run(question="Is the sky blue?", backend=backend)
    assert state["answer"] and state["verdict"] in ("yes", "no")
    assert state.get_meta_info("answer")["completion_tokens"] <= 8


def test_stream(backend) -> None:
    state = qa.run(question="Is water wet?", backend=backend, stream=True)
    pieces = list(state.text_iter(var_name="answer"))
    assert "".join(pieces) == state["answer"] and state["answer"]


def test_run_batch(backend) -> None:
    states = qa.run_batch([{"question": q} for q in ("Is fire hot?", "Is ice cold?", "Is 2 > 1?")],
                          backend=backend, num_threads=3)
    assert all(s["verdict"] in ("yes", "no") for s in states)


IPV4 = r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"


@sgl.function
def regex_gen(s):
    """SGLang's test_regex program (sglang/test/test_programs.py, which imports torchvision here)."""
    s += "Q: What is the IP address of the Google DNS servers?\n"
    s += "A: " + sgl.gen("answer", temperature=0, regex=IPV4)


def test_sglang_test_regex_program(backend) -> None:
    state = regex_gen.run(backend=backend)
    assert re.match(IPV4, state["answer"])


@sgl.function
def any_text(s):
    s += "Write two lines about the sea.\n"
    s += sgl.gen("text", max_tokens=16, temperature=0, regex=r"(.|\n){1,80}")


def test_a_regex_of_every_control_byte_runs(backend) -> None:
    """`(.|\\n)` can write every control byte: compiled without NUL, no longer refused."""
    state = any_text.run(backend=backend)
    assert re.fullmatch(r"(.|\n){1,80}", state["text"])
