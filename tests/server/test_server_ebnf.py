"""EBNF grammars over HTTP: SGLang's `ebnf` on /generate, vLLM's `structured_outputs.grammar` and
`guided_grammar` on the OpenAI routes; outputs checked against the grammar by our own automaton
(no vocabulary involved), bad grammars are a 400 naming the problem."""
from __future__ import annotations

import httpx
import openai
import pytest

from radixgen.constrained.automata.call_automaton import CallAutomaton
from radixgen.constrained.ebnf import MARKER, ebnf_regexes
from radixgen.constrained.ebnf_parse import parse_ebnf

pytestmark = pytest.mark.slow

ARITHMETIC = r"""
root   ::= expr
expr   ::= term ( " "? [-+] " "? term )*
term   ::= factor ( " "? [*/] " "? factor )*
factor ::= [0-9]{1,4} | "(" expr ")"
"""
LIST = 'root ::= ("- " item "\\n"){2,3}\nitem ::= [a-zA-Z ]{1,20}'
PHONE = 'root ::= "(" d d d ") " d d d "-" d d d d\nd ::= [0-9]'  # SGLang's kit, shortened


def in_language(grammar: str, text: str, complete: bool = True) -> bool:
    """Whether `text` is in the grammar's language (complete) or begins a text that is."""
    regex, calls = ebnf_regexes(parse_ebnf(grammar))
    automaton = CallAutomaton(regex, MARKER, calls)
    state = automaton.walk(automaton.initial_state, text.encode())
    return state != 0 and (automaton.is_accepting(state) or not complete)


def test_generate_with_ebnf(client: httpx.Client) -> None:
    for grammar, prompt in ((ARITHMETIC, "Write a sum: "), (PHONE, "A phone number: ")):
        r = client.post("/generate", json={"text": prompt, "sampling_params": {
            "ebnf": grammar, "max_new_tokens": 20, "temperature": 0.8, "n": 2, "seed": 7}}, timeout=600)
        assert r.status_code == 200, r.text
        for out in r.json():
            meta = out["meta_info"]
            if meta["finish_reason"]["type"] != "length":  # ended by the grammar: a whole text
                assert in_language(grammar, out["text"]), out["text"]
            else:  # cut off: still a prefix the grammar allows
                assert in_language(grammar, out["text"], complete=False), out["text"]


def test_openai_structured_outputs_grammar(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(
        model="default", max_tokens=48, temperature=0,
        messages=[{"role": "user", "content": "List two fruits."}],
        extra_body={"structured_outputs": {"grammar": LIST}})
    text = out.choices[0].message.content
    assert out.choices[0].finish_reason == "stop" and in_language(LIST, text), text


def test_openai_guided_grammar_on_completions(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model="default", prompt="A phone number: ", max_tokens=20, temperature=0,
                                 extra_body={"guided_grammar": PHONE})
    assert in_language(PHONE, out.choices[0].text), out.choices[0].text


@pytest.mark.parametrize("body,where", [
    ({"ebnf": 'root ::= expr\nexpr ::= expr "+" "1" | "1"'}, "left-recursive"),
    ({"ebnf": 'root ::= item'}, "'item' (used in rule 'root', line 1) is not defined"),
    ({"ebnf": 'root ::= "a" | (', "max_new_tokens": 2}, "line 1, column 16"),
    ({"ebnf": 'root ::= "a"', "regex": "a"}, "at most one of"),
])
def test_bad_grammars_are_400_naming_the_problem(client: httpx.Client, body, where) -> None:
    r = client.post("/generate", json={"text": "x", "sampling_params": body})
    assert r.status_code == 400 and where in r.text, r.text


def test_structured_outputs_refusals(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="structural_tag is not supported"):
        oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                    extra_body={"structured_outputs": {"structural_tag": "{}"}})
    with pytest.raises(openai.BadRequestError, match="left-recursive"):
        oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                    extra_body={"structured_outputs": {"grammar": "root ::= root 'a' | 'a'"}})
