"""SGLang's own frontend drives the native API unchanged (skipped where sglang is not installed:
`pip install --no-deps sglang==0.5.10.post1` plus numpy requests tqdm pybase64 ipython pydantic aiohttp)."""
from __future__ import annotations

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
