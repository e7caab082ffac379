"""Regex grammars over hand-made vocabularies: masks, advance, rollback, end, forced text."""
from __future__ import annotations

import pytest
import torch

from radixgen.constrained import apply_bitmask, compile_regex, fill_batch_bitmask, make_bitmask
from radixgen.constrained.mask import pack_ids

from constrained_helpers import TINY_EOS, forced_through, mask_allows, tiny_ids, tiny_vocab

DIGITS = "0123456789"
PIECES = ["a", "b", "c", "-", ".", "x", *DIGITS, "bc", "12", "2.", "5-", ".5", "abc"]
VOCAB = tiny_vocab(PIECES)

# The outlines-core 0.2.14 defect: a continuation out of an accepting state was dropped when
# the next accepting state is two or more characters away.
DEFECT_CASES = [
    ("a(bc)?", ["abc", "a"], ["ab", "abcbc", "b"]),
    (r"[0-9]{5}(-[0-9]{4})?", ["94105-1234", "94105"], ["94105-", "94105-123", "9410"]),
    (r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", ["12.5", "12", "-0.25", "0", "100.05"], ["12.", "01", "-", ".5"]),
]


@pytest.mark.parametrize("regex,good,bad", DEFECT_CASES)
def test_defect_regexes_char_by_char(regex, good, bad):
    grammar = compile_regex(regex, VOCAB)
    for text in good:
        assert forced_through(grammar, tiny_ids(PIECES, text)), text
    for text in bad:
        assert not forced_through(grammar, tiny_ids(PIECES, text)), text


@pytest.mark.parametrize("regex,text,ids", [
    ("a(bc)?", "abc", [PIECES.index("a") + 1, PIECES.index("bc") + 1]),
    ("a(bc)?", "abc", [PIECES.index("abc") + 1]),
    (r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", "12.5", [PIECES.index("12") + 1, PIECES.index(".5") + 1]),
    (r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", "12.5", [PIECES.index("1") + 1, PIECES.index("2.") + 1,
                                               PIECES.index("5") + 1]),
    (r"[0-9]{5}(-[0-9]{4})?", "94105-1234",
     tiny_ids(PIECES, "9410") + [PIECES.index("5-") + 1] + tiny_ids(PIECES, "1234")),
])
def test_defect_regexes_multi_char_tokens(regex, text, ids):
    assert "".join(PIECES[i - 1] for i in ids) == text
    assert forced_through(compile_regex(regex, VOCAB), ids)


def test_mask_rows_are_exact():
    grammar = compile_regex("a(bc)?", VOCAB)
    m = grammar.new_matcher()
    allowed = {PIECES[i - 1] for i in m.allowed_token_ids()}
    assert allowed == {"a", "abc"}
    assert m.advance(tiny_ids(PIECES, "a")[0])
    allowed = {PIECES[i - 1] if i else "<eos>" for i in m.allowed_token_ids()}
    assert allowed == {"b", "bc", "<eos>"}  # "b" is the token the defect used to drop
    assert m.can_end() and not m.is_finished()


def test_advance_rejects_and_eos_only_at_end():
    grammar = compile_regex("ab", VOCAB)
    m = grammar.new_matcher()
    assert not m.advance(TINY_EOS)
    assert not m.advance(tiny_ids(PIECES, "b")[0])
    assert m.advance_tokens(tiny_ids(PIECES, "ab"))
    assert m.is_finished() and m.can_end()
    bitmask = make_bitmask(1, grammar.vocab_size)
    m.fill_bitmask(bitmask, 0)
    assert [i for i in range(grammar.vocab_size) if mask_allows(bitmask, 0, i)] == [TINY_EOS]
    assert m.advance(TINY_EOS) and m.is_finished()
    assert not m.advance(TINY_EOS) and not m.advance(1)


def test_advance_tokens_is_all_or_nothing():
    m = compile_regex("abc", VOCAB).new_matcher()
    assert not m.advance_tokens(tiny_ids(PIECES, "abx"))
    assert m.num_tokens == 0
    assert m.advance_tokens(tiny_ids(PIECES, "ab")) and m.num_tokens == 2


def test_rollback():
    grammar = compile_regex(r"[0-9]{5}(-[0-9]{4})?", VOCAB)
    m = grammar.new_matcher()
    assert m.advance_tokens(tiny_ids(PIECES, "94105-12"))
    start = m.state
    m.rollback(3)  # back to "94105"
    assert m.can_end() and m.num_tokens == 5
    assert m.advance_tokens(tiny_ids(PIECES, "-12")) and m.state == start
    m.rollback(m.num_tokens)
    assert m.state == grammar.initial_state
    with pytest.raises(ValueError):
        m.rollback(1)
    assert m.advance_tokens(tiny_ids(PIECES, "94105")) and m.advance(TINY_EOS)
    m.rollback(1)  # EOS can be undone too
    assert not m.is_finished() and m.can_end()
    assert m.advance(tiny_ids(PIECES, "-")[0])


def test_forced_string():
    grammar = compile_regex(r"x-(a|b)bc\.[0-9]", VOCAB)
    m = grammar.new_matcher()
    assert m.forced_string() == "x-"
    assert m.advance_tokens(tiny_ids(PIECES, "x-a"))
    assert m.forced_string() == "bc."
    assert m.advance_tokens(tiny_ids(PIECES, "bc.1"))
    assert m.forced_string() is None  # complete: ending is one of the continuations


def test_forced_string_stops_at_accepting_state():
    m = compile_regex("abc(ab)?", VOCAB).new_matcher()
    assert m.forced_string() == "abc"


def test_fill_bitmask_rows_and_padding():
    grammar = compile_regex("a|b", VOCAB)
    bitmask = make_bitmask(3, grammar.vocab_size + 64)  # a model vocab padded past the tokenizer's
    grammar.new_matcher().fill_bitmask(bitmask, 1)
    assert (bitmask[0] == -1).all() and (bitmask[2] == -1).all()  # other rows untouched
    allowed = [i for i in range(32 * bitmask.shape[1]) if mask_allows(bitmask, 1, i)]
    assert allowed == [PIECES.index("a") + 1, PIECES.index("b") + 1]


def test_apply_bitmask_one_op():
    logits = torch.zeros(2, 40)
    bitmask = make_bitmask(2, 40)
    bitmask[0] = 0
    bitmask[0, 1] = 1 << 3  # token 35 only
    apply_bitmask(logits, bitmask)
    assert torch.isinf(logits[0]).sum() == 39 and logits[0, 35] == 0
    assert not torch.isinf(logits[1]).any()
    narrow = torch.zeros(1, 70)  # logits wider than the bitmask: the rest is disallowed
    apply_bitmask(narrow, make_bitmask(1, 40))
    assert torch.isinf(narrow[0, 64:]).all() and not torch.isinf(narrow[0, :64]).any()


def test_invalid_regex_names_the_problem():
    with pytest.raises(ValueError, match="invalid regex"):
        compile_regex("a(b", VOCAB)
    with pytest.raises(ValueError, match="look-around"):
        compile_regex("a(?=b)", VOCAB)
    with pytest.raises(ValueError, match="backreference"):
        compile_regex(r"(a)\1", VOCAB)


def test_marker_chosen_around_control_bytes():
    pieces = ["a", "\x00", "\x01"]
    vocab = tiny_vocab(pieces)
    grammar = compile_regex("a\x00?a", vocab)  # the regex produces \x00: another marker is used
    assert grammar.marker != b"\x00"
    assert forced_through(grammar, tiny_ids(pieces, "a\x00a"))
    assert forced_through(grammar, tiny_ids(pieces, "aa"))
    assert not forced_through(grammar, tiny_ids(pieces, "a\x01a"))


def test_fill_batch_bitmask_matches_per_row_fill():
    grammar = compile_regex("ab|ba", VOCAB)
    first, second = grammar.new_matcher(), grammar.new_matcher()
    assert second.advance(tiny_ids(PIECES, "b")[0])
    batch = make_bitmask(3, grammar.vocab_size + 40)
    batch.zero_()
    fill_batch_bitmask(batch, [first, None, second])
    expected = make_bitmask(3, grammar.vocab_size + 40)
    first.fill_bitmask(expected, 0)
    second.fill_bitmask(expected, 2)
    assert torch.equal(batch, expected)


def test_a_regex_with_dot_uses_newline_as_its_marker():
    """`.` produces every control byte but a newline (SGLang's IPv4 regex); (.|\\n) produces all."""
    pieces = ["a", "\x01", "\n", "a\n"]
    vocab = tiny_vocab(pieces)
    grammar = compile_regex("a.a", vocab)
    assert grammar.marker == b"\n"
    assert forced_through(grammar, tiny_ids(pieces, "a\x01a"))
    assert not forced_through(grammar, tiny_ids(pieces, "a\na"))
    with pytest.raises(ValueError, match="every ASCII control byte, newline included"):
        compile_regex("a(.|\n)a", vocab)


def test_stop_opening_tokens_are_allowed_only_where_the_text_is_complete():
    pieces = ["1", "2", " ", " h", "h"]
    vocab = tiny_vocab(pieces)
    matcher = compile_regex("[0-9]+", vocab).new_matcher()
    stop_row = torch.from_numpy(pack_ids(vocab.ids_starting_with(b" "), vocab.size))
    matcher.allow_stops(stop_row)
    space, space_h, h = (pieces.index(p) + 1 for p in (" ", " h", "h"))
    assert set(vocab.ids_starting_with(b" ").tolist()) == {space, space_h}
    assert space_h not in matcher.allowed_token_ids()        # "" is not a number yet
    assert matcher.advance(pieces.index("2") + 1)
    allowed = set(matcher.allowed_token_ids().tolist())
    assert {space, space_h} <= allowed and h not in allowed  # "2" is: a stop may open here
    assert not matcher.advance(space_h)                      # the grammar itself never takes it
