"""User regexes in Python's `re` syntax on the real SmolLM2 vocabulary: what `re` parses compiles
(or is refused naming the feature), regexes that can write every control byte included."""
from __future__ import annotations

import re

import pytest

from radixgen.constrained.regex_syntax import compile_python_regex, to_rust_regex

from constrained_helpers import byte_ids, encode, forced_through, tiny_vocab

IPV4 = r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"  # SGLang's test_regex


@pytest.mark.parametrize("regex,good,bad", [
    (r".|\n", ["a", "\n", "é", "\x01"], ["ab", ""]),
    (r"[\s\S]*", ["", "two\nlines\x1f", "tab\there"], ["nul\x00"]),
    (r"(.|\n)*", ["", "any\ntext\r\n"], ["\x00"]),
    (r"(?s:.)+x", ["\n\nx", "ax"], ["x\x00x"]),
    (IPV4, ["8.8.8.8", "192.168.0.255", "1a2b3c4"], ["256.1.1.1", "8.8.8", "8.8.8.8."]),
])
def test_regexes_people_write_compile_and_constrain(smollm, smollm_tokenizer, regex, good, bad):
    grammar = smollm.compile("regex", regex)
    for text in good:
        assert re.fullmatch(regex, text, re.DOTALL if "(?s" in regex else 0) or regex != IPV4
        assert forced_through(grammar, encode(smollm_tokenizer, text)), text
        assert forced_through(grammar, byte_ids(grammar, text)), text
    for text in bad:
        assert not forced_through(grammar, byte_ids(grammar, text)), text


@pytest.mark.parametrize("regex,good,bad", [
    (r"a{,3}b", ["b", "aaab"], ["aaaab"]),                 # {,n}: Rust has no such form
    (r"\{[a-z]+}", ["{ab}"], ["{}"]),                      # a literal brace, unescaped closer
    (r"x(?#a comment)y", ["xy"], ["x"]),
    (r"^\d+\Z", ["42"], ["42\n"]),                         # \Z, Python's end of text
    (r"[[]+", ["[["], ["]"]),                              # `[` inside a class
    (r"\<tag\>", ["<tag>"], ["tag"]),                      # word boundaries in Rust, < and > in re
    (r"(?i)yes|no", ["YES", "no"], ["maybe"]),
    (r"(?x) a b  # spaced", ["ab"], ["a b"]),
    (r"(?a)\w+", ["ab_1"], ["é"]),                         # ASCII classes
    (r"\s", ["\x1c", " "], ["a"]),                         # re's \s holds \x1c-\x1f, Rust's does not
    (r"a\0b.", ["a\x00b\x01"], ["a\x00b\n"]),              # a NUL literal: another end marker
    (r"(?P<year>\d{4})-(?P=year)?", ["2024-"], []),
])
@pytest.mark.filterwarnings("ignore::FutureWarning")  # `[[]`: re warns of a nested set to come
def test_python_syntax_is_read_as_python_reads_it(smollm, regex, good, bad):
    if "(?P=" in regex:  # a backreference: refused, naming it
        with pytest.raises(ValueError, match="backreference"):
            smollm.compile("regex", regex)
        return
    grammar = smollm.compile("regex", regex)
    for text in good:
        assert re.fullmatch(regex, text), text
        assert forced_through(grammar, byte_ids(grammar, text)), text
    for text in bad:
        assert not re.fullmatch(regex, text), text
        assert not forced_through(grammar, byte_ids(grammar, text)), text


@pytest.mark.parametrize("regex,feature", [
    (r"a(?=b)b", "look-around"),
    (r"(?<!a)b", "look-around"),
    (r"(a)\1", "backreference"),
    (r"\bword\b", "word boundary"),
    (r"(a)?(?(1)b|c)", "conditional group"),
    (r"(?>a+)b", "atomic group"),
    (r"a++", "possessive quantifier"),
    (r"a^b", "anchor"),
    (r"a(", "invalid regex"),
])
def test_refusals_name_the_feature(smollm, regex, feature):
    with pytest.raises(ValueError, match=re.escape(feature)):
        smollm.compile("regex", regex)


def test_anchors_at_the_ends_are_dropped():
    assert to_rust_regex(r"^(a|^b$)$") == "(?:(?:a|b))"
    assert to_rust_regex(r"[^\n]", exclude=0) == r"[[^\x{A}]&&[^\x{0}]]"


@pytest.mark.parametrize("regex", [
    r"\w+@\w+\.com", r"[^\W\d]", r"(?i)[à-ÿ]+", r"\x00", r"[\x00-\xff]*", r"\N{EM DASH}",
    r"[\u0000-\U0010FFFF]*", "", "a|", "()", "(?:)*", "a{0}", r"(a*)*", r"(?s).*", r"(?i:A)(?-i:b)",
    r"[\d\D]", r"\t\n\r\f\v\a", r"[\b]", r"\$\^\.\*", r"(?x)[ ]", r"\W", r"[-a]", r"[a-]", r"[]a]",
])
def test_odd_corners_of_re_syntax_compile(regex):
    """Each of these compiles (on a tiny vocabulary: this is about syntax, not masks)."""
    vocab = tiny_vocab(["a", "b", "\x00", "\n", "é"])
    assert compile_python_regex(regex, vocab).initial_state


def test_a_regex_of_no_text_says_so():
    with pytest.raises(ValueError, match="admits no text"):
        compile_python_regex(r"[^\s\S]", tiny_vocab(["a"]))
