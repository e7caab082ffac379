"""Grammar-constrained decoding: regex, JSON schema, choices, EBNF grammars and structural tags as
token masks. Three layers, imported one way (top -> automata, top -> schema -> automata):

    schema/    JSON schema -> a regex with marks (free-form slots, $ref calls, uniqueItems) for
               the pushdown: one Converter (json_schema.py) and a module per keyword family
    automata/  regexes as byte-level automata: outlines-core indexes (index.py), the dense
               ByteAutomaton, the pushdowns that read the marks (slot_automaton, call_automaton)
               and the free-form JSON value reader (json_free)
    here       grammars against a tokenizer's vocabulary (CompiledGrammar, LazyGrammar), the
               per-request matchers, jump-forward, the compiler (cache, sandbox) and one module
               per grammar kind (regex_syntax, ebnf, structural_tag + tag_*)

Use:

    compiler = GrammarCompiler(tokenizer)            # vocabulary built once
    grammar = compiler.compile("json_schema", schema) # or "regex", "choices", "ebnf"; submit() -> Future
    matcher = grammar.new_matcher()                   # one per request
    matcher.fill_bitmask(bitmask, row); apply_bitmask(logits, bitmask)
    matcher.advance(token_id); matcher.forced_string(); matcher.rollback(n)
"""
from .compiler import GrammarCompiler, canonical_spec, choices_regex
from .ebnf import compile_ebnf
from .errors import UnsupportedSchemaError
from .grammar import CompiledGrammar, compile_regex
from .grammar_base import Grammar
from .lazy_grammar import LazyGrammar, compile_lazy
from .mask import apply_bitmask, make_bitmask
from .matcher import GrammarMatcher, fill_batch_bitmask
from .schema.json_schema import WHITESPACE, JsonOptions, json_schema_to_regex
from .vocab import TokenVocab, build_token_vocab, token_bytes, token_vocab_from_tokenizer

__all__ = [
    "GrammarCompiler", "Grammar", "CompiledGrammar", "LazyGrammar", "compile_lazy", "GrammarMatcher", "fill_batch_bitmask", "UnsupportedSchemaError",
    "json_schema_to_regex", "JsonOptions", "WHITESPACE", "make_bitmask", "apply_bitmask", "compile_regex",
    "canonical_spec", "choices_regex", "TokenVocab", "build_token_vocab", "token_bytes",
    "token_vocab_from_tokenizer", "compile_ebnf",
]
