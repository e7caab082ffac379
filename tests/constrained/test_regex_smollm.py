"""Regex grammars on the real SmolLM2 vocabulary (49,152 tokens, byte-level BPE): every string
the regex accepts goes through the masks, with the tokenizer's own encoding and byte by byte;
strings it rejects do not."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixgen.constrained import token_bytes

from constrained_helpers import byte_ids, encode, forced_through

DEFECT_CASES = [
    ("a(bc)?", ["abc", "a"], ["ab", "abcbc", "b", ""]),
    (r"[0-9]{5}(-[0-9]{4})?", ["94105-1234", "94105", "00000"], ["94105-", "94105-123", "9410"]),
    (r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", ["12.5", "12", "-0.25", "0", "100.05", "3.14159"],
     ["12.", "01", "-", ".5", "1e5"]),
]
PROPERTY_REGEXES = [
    r"a(bc)?",
    r"[0-9]{5}(-[0-9]{4})?",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?",
    r"(Mr|Mrs|Dr)\. [A-Z][a-z]{1,8}( [A-Z][a-z]{1,8})?",
    r"[a-z]+(-[a-z]+)*@[a-z]{2,5}\.(com|org)",
    r"(yes|no)( because [a-z ]{1,20})?",
    r"\(?[0-9]{3}\)? ?[0-9]{3}-[0-9]{4}",
    r"[ -~]{0,12}",  # printable ASCII, to exercise arbitrary token boundaries
]


def test_token_bytes_byte_level(smollm_tokenizer):
    pieces = token_bytes(smollm_tokenizer)
    space_the = smollm_tokenizer.convert_tokens_to_ids("Ġthe")
    assert pieces[space_the] == b" the"
    assert pieces[smollm_tokenizer.eos_token_id] is None  # special tokens never match text


@pytest.mark.parametrize("regex,good,bad", DEFECT_CASES)
def test_defect_regexes(smollm, smollm_tokenizer, regex, good, bad):
    grammar = smollm.compile("regex", regex)
    for text in good:
        assert forced_through(grammar, encode(smollm_tokenizer, text)), text
        assert forced_through(grammar, byte_ids(grammar, text)), text
    for text in bad:
        assert not forced_through(grammar, encode(smollm_tokenizer, text)), text


@pytest.mark.parametrize("regex", PROPERTY_REGEXES)
def test_accepted_strings_pass_the_masks(smollm, smollm_tokenizer, regex):
    grammar = smollm.compile("regex", regex)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.from_regex(regex, fullmatch=True))
    def check(text: str) -> None:
        assert forced_through(grammar, encode(smollm_tokenizer, text)), text
        assert forced_through(grammar, byte_ids(grammar, text)), text

    check()


@pytest.mark.parametrize("regex", PROPERTY_REGEXES[:6])
def test_rejected_strings_do_not_pass(smollm, smollm_tokenizer, regex):
    grammar = smollm.compile("regex", regex)
    pattern = re.compile(regex)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.from_regex(regex, fullmatch=True), st.text("ab-.1 @xZ", min_size=1, max_size=3),
           st.integers(0, 40))
    def check(text: str, noise: str, at: int) -> None:
        mutated = text[:at] + noise + text[at:]
        if pattern.fullmatch(mutated):
            return
        assert not forced_through(grammar, encode(smollm_tokenizer, mutated)), mutated
        assert not forced_through(grammar, byte_ids(grammar, mutated)), mutated

    check()


def test_unicode_and_multibyte(smollm, smollm_tokenizer):
    grammar = smollm.compile("regex", "(café|naïve|日本)!")
    for text in ["café!", "naïve!", "日本!"]:
        assert forced_through(grammar, encode(smollm_tokenizer, text))
        assert forced_through(grammar, byte_ids(grammar, text))
    assert not forced_through(grammar, encode(smollm_tokenizer, "cafe!"))


def test_forced_string_real_vocab(smollm, smollm_tokenizer):
    grammar = smollm.compile("regex", r'The answer is (yes|no)\.')
    m = grammar.new_matcher()
    assert m.forced_string() == "The answer is "
    assert m.advance_tokens(encode(smollm_tokenizer, "The answer is"))
    assert m.forced_string() == " "
    assert m.advance_tokens(encode(smollm_tokenizer, " yes"))
    assert m.forced_string() == "."


def test_jump_forward_retokenized_text_is_accepted(smollm, smollm_tokenizer):
    """The engine appends the forced text re-tokenized in context; the matcher follows it."""
    grammar = smollm.compile("regex", r'\{"name": "[a-z]+", "id": [0-9]+\}')
    m = grammar.new_matcher()
    forced = m.forced_string()
    assert forced == '{"name": "'
    assert m.advance_tokens(encode(smollm_tokenizer, forced))
    assert m.advance_tokens(encode(smollm_tokenizer, "bob"))
    assert m.advance_tokens(encode(smollm_tokenizer, '"'))
    assert m.forced_string() == ', "id": '
