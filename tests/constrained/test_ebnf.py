"""EBNF / GBNF grammars on the real SmolLM2 vocabulary: texts of each test grammar pass the masks
token by token (the tokenizer's own split and single bytes), texts outside it do not, and every
refusal names the problem."""
from __future__ import annotations

import pytest

from radixgen.constrained.automata.call_automaton import MAX_CALLS
from radixgen.constrained.ebnf import ebnf_regexes
from radixgen.constrained.ebnf_parse import parse_ebnf

from constrained_helpers import byte_ids, encode, forced_through
from ebnf_grammars import CASES

# SGLang's own EBNF test grammars (sglang.test.kits.ebnf_constrained_kit), with a text of each
SGLANG_KIT = [
    ('root ::= "user@example.com"', "user@example.com"),
    ('root ::= "Hello" | "Hi" | "Hey"', "Hi"),
    ("root ::= digit digit digit\n        digit ::= [0-9]", "042"),
    ('root ::= "(" area ")" " " prefix "-" line\narea ::= [0-9] [0-9] [0-9]\nprefix ::= [0-9] [0-9] [0-9]\n'
     'line ::= [0-9] [0-9] [0-9] [0-9]', "(555) 123-4567"),
    ('root ::= year "-" month "-" day\nyear ::= "2024"\nmonth ::= "01" | "02" | "12"\n'
     'day ::= "01" | "02" |\n       "30" | "31"', "2024-12-31"),
    ('root ::= "#" hex hex hex hex hex hex\nhex ::= [0-9] | [A-F]', "#0A0BFF"),
]


@pytest.mark.parametrize("name", sorted(CASES))
def test_texts_of_the_grammar_pass_and_others_do_not(smollm, smollm_tokenizer, name):
    text, good, bad = CASES[name]
    grammar = smollm.compile("ebnf", text)
    for s in good:
        assert forced_through(grammar, encode(smollm_tokenizer, s)), s
        assert forced_through(grammar, byte_ids(grammar, s)), s
    for s in bad:
        assert not forced_through(grammar, encode(smollm_tokenizer, s)), s
        assert not forced_through(grammar, byte_ids(grammar, s)), s


@pytest.mark.parametrize("text,sample", SGLANG_KIT)
def test_sglang_kit_grammars(smollm, smollm_tokenizer, text, sample):
    grammar = smollm.compile("ebnf", text)
    assert forced_through(grammar, encode(smollm_tokenizer, sample))
    assert not forced_through(grammar, encode(smollm_tokenizer, sample + "0"))


def test_forced_text_jumps_forward(smollm):
    """A literal the grammar forces is offered whole, also where it follows a called rule."""
    matcher = smollm.compile("ebnf", CASES["chess"][0]).new_matcher()
    assert matcher.forced_string() == "1. "
    grammar = smollm.compile("ebnf", 'root ::= "[" item "]"\nitem ::= "x" | "[" item "]"')
    matcher = grammar.new_matcher()
    assert matcher.forced_string() == "["


def test_nullable_rules_in_loops_close(smollm, smollm_tokenizer):
    grammar = smollm.compile("ebnf", 'root ::= x* "b" ws\nx ::= "a"? ws\nws ::= " "*')
    for s in ("b", "aab", "a a  b ", " b"):
        assert forced_through(grammar, encode(smollm_tokenizer, s)), s
    assert not forced_through(grammar, encode(smollm_tokenizer, "ba"))


def test_recursion_up_to_the_call_bound(smollm, smollm_tokenizer):
    grammar = smollm.compile("ebnf", 'root ::= "(" root ")" | "x"')
    assert forced_through(grammar, byte_ids(grammar, "(" * 60 + "x" + ")" * 60))
    assert not forced_through(grammar, byte_ids(grammar, "(" * 60 + "x" + ")" * 59))
    deep = MAX_CALLS + 1  # the root's regex calls itself once a level
    assert not forced_through(grammar, byte_ids(grammar, "(" * deep + "x" + ")" * deep))


def test_layouts_of_gbnf_and_xgrammar_parse():
    """One rule a line (GBNF), rules spread over lines with `|` first or last (xgrammar), comments."""
    a = parse_ebnf('root ::= a | b # first\na ::= "a"\nb ::= "b"')
    b = parse_ebnf('root ::=\n    a\n  | b\n\n# comment\na ::= "a" b ::= "b"')
    assert a == b
    assert ebnf_regexes(parse_ebnf('root ::= [a-z]{2,} "x"{3}'))[0] == "(?:[a-z]){2,}(?:x){3}"


@pytest.mark.parametrize("text,message", [
    ('root ::= expr\nexpr ::= expr "+" num | num\nnum ::= [0-9]+', r"rule 'expr' is left-recursive \(expr -> expr"),
    ('root ::= a\na ::= b? c\nc ::= a "x"\nb ::= "y"', r"left-recursive \(a -> c -> a"),
    ('root ::= x\nx ::= "a" y', r"rule 'y' \(used in rule 'x', line 2\) is not defined"),
    ('start ::= "a"', r"no rule named 'root'"),
    ('root ::= "a"\nroot ::= "b"', r"line 2, column 1: rule 'root' is defined twice"),
    ('root ::= "a" (\n "b"', r"line 1, column 14: expected '\)'"),
    ('root ::= [a-', r"unterminated character class"),
    ('root ::= "abc', r"line 1, column 10: unterminated string"),
    ('root ::= "a"{3,2}', r"maximum below its minimum"),
    ('root ::= "\\q"', r"unknown escape"),
    ('root ::= "a" (= "b")', r"lookahead assertions"),
    ('root ::= <think> "a"', r"token references"),
    ('root ::= "a\\x00"', r"U\+0000, a control character this runtime reserves"),
    ('root ::= "a" ::= "b"', r"expected a rule name|unexpected"),
])
def test_refusals_name_the_problem(smollm, text, message):
    with pytest.raises(ValueError, match=message):
        smollm.compile("ebnf", text)


def test_reserved_bytes_are_never_text(smollm, smollm_tokenizer):
    """`.` and negated classes leave out U+0000 (the end marker) and U+0001 (rule calls)."""
    grammar = smollm.compile("ebnf", "root ::= .* | [^a]*")
    assert forced_through(grammar, encode(smollm_tokenizer, "any\ttext\x02\n"))
    assert not forced_through(grammar, byte_ids(grammar, "a\x01"))
    assert not forced_through(grammar, byte_ids(grammar, "\x00"))
