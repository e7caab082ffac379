"""What the keyword modules (json_array, json_object, json_refs, ...) share with the Converter
(json_schema.py) without importing it: the narrowing options and the conversion's state, with the
converter's entry points as methods its subclass defines.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class JsonOptions:
    """How far the converter may narrow a schema to keep its automaton small (every setting
    only removes valid texts, never adds invalid ones).

    max_recursion: times one $ref may be open at once (recursive schemas are unrolled to it);
    any_depth: container nesting inside free-form values (`{}`, objects and arrays that declare
    nothing); extra_depth: the same for untyped additional properties beside declared ones and
    array items after prefixItems; length_cap / exact_until: see
    json_values.bounded_string; additional: generate additional properties where the schema
    allows them (False: only for objects that declare no properties at all); optional_depth:
    objects nested deeper than this write their required properties only (None: no limit);
    slots: free-form values become one SLOT byte each, read by slot_automaton.py as any JSON
    value up to json_free.MAX_DEPTH deep (the *_depth settings then do nothing), and uniqueItems arrays are marked
    with a UNIQUE byte for the matcher to enforce (unique_items.py) instead of being narrowed;
    calls: (with slots) a recursive or long $ref is a CALL byte and a regex of its own
    (json_refs.py) instead of being copied and unrolled max_recursion deep, see
    json_schema_parts.

    Finishing defaults (narrowings that keep a small model from writing digits without end, as
    llama.cpp's json-schema-to-grammar does; None lifts a limit, see json_numbers.py):
    int_digits: most digits in a number's integer part (unless a bound needs more); frac_digits:
    most fraction digits (unless a bound needs more); exp_digits: most exponent digits of an
    unbounded number (0: no exponent; bounded numbers are written without one). The same
    limits hold in free-form values (number_limits, for slot_automaton.py). string_cap /
    items_cap: most characters of a string without maxLength (and without pattern or format) /
    items of an array without maxItems, None: no cap. Off by default: measured on 20 dev schemas
    that ran to 256 tokens, caps of 64 / 8 let 3 finish but made 4 miss the 10 s compile limit
    (an array cap copies the item regex once per item). Free-form values are never capped.
    undeclared_keys: an object that declares `properties` and says nothing of
    additionalProperties / patternProperties may also get keys it does not declare (JSON
    Schema's meaning). False by default (llama.cpp's and xgrammar's strict choice): side by side
    with llama.cpp on the dev schemas, 14 of the 27 outputs that ran to the limit under ours and
    finished under theirs were looping through such keys (repeated keys, the schema echoed from the
    prompt). An explicit `additionalProperties: true` or a schema keeps extras.
    close_strings_at / close_arrays_at: content bytes of a string / items of an array after which
    it must close wherever the grammar lets it (the matcher then allows only tokens starting with
    `"` / `]`; constrained/json_close.py), None: never. A string is closed only once its last
    bytes also repeat (json_close.repeating): a long string that does not loop is never cut. Not counted in the regex (string_cap,
    items_cap), so they cost nothing to compile. They apply to every JSON-schema grammar,
    free-form values and keys included. close_depth_at: inside this many containers, tokens
    that open another are not allowed where the grammar allows any other (free-form values there
    become scalars; declared objects and arrays still open).
    """
    max_recursion: int = 3
    any_depth: int = 3
    extra_depth: int = 2
    length_cap: int = 128
    exact_until: int = 32
    additional: bool = True
    optional_depth: int | None = None
    slots: bool = False
    calls: bool = False
    int_digits: int | None = 16
    frac_digits: int | None = 16
    exp_digits: int | None = 3
    string_cap: int | None = None
    items_cap: int | None = None
    undeclared_keys: bool = False
    close_strings_at: int | None = 128
    close_arrays_at: int | None = None
    close_depth_at: int | None = None

    @property
    def number_limits(self) -> tuple[int | None, int | None, int | None]:
        return self.int_digits, self.frac_digits, self.exp_digits

    def without_limits(self) -> "JsonOptions":
        """These options with the finishing defaults off (every valid number's text allowed)."""
        return replace(self, int_digits=None, frac_digits=None, exp_digits=None, string_cap=None, items_cap=None,
                       close_strings_at=None, close_arrays_at=None, close_depth_at=None)


NO_LIMITS = JsonOptions(int_digits=None, frac_digits=None, exp_digits=None, undeclared_keys=True,
                        close_strings_at=None, close_arrays_at=None, close_depth_at=None)
FINISHING = ("int_digits", "frac_digits", "exp_digits", "string_cap", "items_cap", "undeclared_keys",
             "close_strings_at", "close_arrays_at", "close_depth_at")  # the finishing defaults


class ConverterBase:
    """One schema's conversion: the root (for $ref), the whitespace, the narrowing options, and
    what the keyword modules read and write while it runs."""

    def __init__(self, root: Any, whitespace: str, options: JsonOptions) -> None:
        self.root, self.ws, self.options = root, whitespace, options
        self.max_recursion, self.any_depth = options.max_recursion, options.any_depth
        self.ref_stack: list[str] = []
        self.object_depth = 0  # objects open around the value being converted
        self.memo: dict[tuple, str | None] = {}  # expanded $refs (json_refs.py)
        self.call_bytes: dict[str, int] = {}  # $ref (with siblings) -> its CALL byte
        self.calls: dict[int, str | None] = {}  # CALL byte -> regex of a value of that $ref

    def value(self, schema: Any, ptr: str) -> str | None:
        """The regex of a value of `schema` (None: no value can match), at JSON pointer `ptr`."""
        raise NotImplementedError

    def resolve(self, ref: str, ptr: str) -> Any:
        """The schema `ref` points to."""
        raise NotImplementedError

    def merge(self, parts: list[Any], ptr: str) -> Any:
        """One schema that is all of `parts` (allOf)."""
        raise NotImplementedError

    def any_value(self, depth: int) -> str:
        """The regex of any JSON value nested at most `depth` deep (or a free-form SLOT)."""
        raise NotImplementedError
