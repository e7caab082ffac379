"""Structural tags: free text with schema-constrained spans opened by a marker (spec -> TagFormat).

A structural tag lets a model write what it likes until it writes a *trigger* (e.g. `<tool_call>`);
from there the text must complete one of the tags that begin with that trigger, then hold a value
of the tag's JSON schema, then the tag's end marker, after which free text resumes. This is
xgrammar's structural tag as SGLang and vLLM accept it, in two spellings:

    {"type": "structural_tag", "structures": [{"begin": ..., "schema": {...}, "end": ...}],
     "triggers": ["<function="]}                                       # SGLang's original form
    {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": [...],
     "tags": [{"begin": ..., "content": {"type": "json_schema", "json_schema": {...}}, "end": ...}],
     "at_least_one": false, "stop_after_first": false}}               # xgrammar's newer form

The newer form also takes `"type": "tags_with_separator"` (no free text: tags only, joined by
`separator`), which is what a forced tool call is. Only `json_schema` content is supported (the
other content kinds of xgrammar are refused by name). The matcher is tag_matcher.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_TAGS = 256
MAX_MARKER_CHARS = 1024


@dataclass(frozen=True)
class Tag:
    begin: str
    schema: Any     # a JSON schema (dict or bool), compiled as the json_schema kind
    end: str


@dataclass(frozen=True)
class TagFormat:
    """tags: the structures; triggers: markers that open a tag out of free text (empty when
    free_text is False); separator: between tags when there is no free text; at_least_one: the
    output may not end before a tag was written; stop_after_first: the output ends with the
    first tag."""
    tags: tuple[Tag, ...]
    triggers: tuple[str, ...]
    free_text: bool
    separator: str = ""
    at_least_one: bool = False
    stop_after_first: bool = False

    def tags_under(self, trigger: str) -> list[int]:
        """Indices of the tags whose begin starts with `trigger`."""
        return [i for i, t in enumerate(self.tags) if t.begin.startswith(trigger)]


def parse_structural_tag(spec: Any) -> TagFormat:
    """A structural tag (dict or JSON text) -> TagFormat; ValueError naming what is wrong."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"structural_tag is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"structural_tag must be an object, got {type(spec).__name__}")
    if spec.get("type", "structural_tag") != "structural_tag":
        raise ValueError(f"structural_tag's type must be 'structural_tag', got {spec.get('type')!r}")
    if "format" in spec:
        fmt = _parse_format(spec["format"])
    elif "structures" in spec:
        tags = [_tag(s, f"structures[{i}]", legacy=True) for i, s in enumerate(_list(spec, "structures"))]
        fmt = TagFormat(tuple(tags), tuple(_strings(spec, "triggers")), free_text=True)
    else:
        raise ValueError("structural_tag needs 'structures' and 'triggers', or a 'format'")
    _check(fmt)
    return fmt


def _parse_format(fmt: Any) -> TagFormat:
    if not isinstance(fmt, dict):
        raise ValueError("structural_tag.format must be an object")
    kind = fmt.get("type")
    if kind not in ("triggered_tags", "tags_with_separator"):
        raise ValueError(f"structural_tag.format.type {kind!r} is not supported; "
                         "use 'triggered_tags' or 'tags_with_separator'")
    tags = tuple(_tag(t, f"format.tags[{i}]", legacy=False) for i, t in enumerate(_list(fmt, "tags")))
    flags = {k: fmt.get(k, False) for k in ("at_least_one", "stop_after_first")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"structural_tag.format.{name} must be a boolean")
    if kind == "triggered_tags":
        return TagFormat(tags, tuple(_strings(fmt, "triggers")), free_text=True, **flags)
    separator = fmt.get("separator", "")
    if not isinstance(separator, str):
        raise ValueError("structural_tag.format.separator must be a string")
    return TagFormat(tags, (), free_text=False, separator=separator, **flags)


def _list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list) or not value:
        raise ValueError(f"structural_tag's {key!r} must be a non-empty list")
    if len(value) > MAX_TAGS:
        raise ValueError(f"structural_tag's {key!r} has {len(value)} entries, over the limit of {MAX_TAGS}")
    return value


def _strings(obj: dict, key: str) -> list[str]:
    value = _list(obj, key)
    if not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"structural_tag's {key!r} must be non-empty strings")
    return value


def _tag(obj: Any, where: str, legacy: bool) -> Tag:
    if not isinstance(obj, dict):
        raise ValueError(f"structural_tag {where} must be an object")
    if obj.get("type", "tag") != "tag":
        raise ValueError(f"structural_tag {where}.type {obj.get('type')!r} is not supported; use 'tag'")
    begin, end = obj.get("begin"), obj.get("end", "")
    if not isinstance(begin, str) or not begin or not isinstance(end, str):
        raise ValueError(f"structural_tag {where} needs a non-empty string 'begin' and a string 'end'")
    if max(len(begin), len(end)) > MAX_MARKER_CHARS:
        raise ValueError(f"structural_tag {where}: begin and end take at most {MAX_MARKER_CHARS} characters")
    schema = obj.get("schema") if legacy else _content_schema(obj.get("content"), where)
    if isinstance(schema, str):  # some clients send the schema as JSON text
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise ValueError(f"structural_tag {where}: the schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"structural_tag {where} needs a JSON schema object")
    return Tag(begin, schema, end)


def _content_schema(content: Any, where: str) -> Any:
    if not isinstance(content, dict):
        raise ValueError(f"structural_tag {where}.content must be an object")
    if content.get("type") != "json_schema":
        raise ValueError(f"structural_tag {where}.content.type {content.get('type')!r} is not supported; "
                         "only 'json_schema' content is")
    return content.get("json_schema")


def _check(fmt: TagFormat) -> None:
    """Every tag reachable, and no ambiguity a matcher could not resolve token by token."""
    if fmt.free_text:
        for i, tag in enumerate(fmt.tags):
            if not any(tag.begin.startswith(t) for t in fmt.triggers):
                raise ValueError(f"structural_tag: tag {i}'s begin {tag.begin!r} starts with none of the "
                                 f"triggers {list(fmt.triggers)}")
        for trigger in fmt.triggers:
            if not fmt.tags_under(trigger):
                raise ValueError(f"structural_tag: the trigger {trigger!r} opens none of the tags")
            _no_prefixes([fmt.tags[i].begin for i in fmt.tags_under(trigger)], f"under trigger {trigger!r}")
    else:
        _no_prefixes([t.begin for t in fmt.tags], "")


def _no_prefixes(begins: list[str], where: str) -> None:
    for i, a in enumerate(begins):
        for j, b in enumerate(begins):
            if i != j and b.startswith(a):
                raise ValueError(f"structural_tag: the begin {a!r} is a prefix of {b!r}{' ' + where if where else ''}"
                                 "; the matcher could not tell which tag was opened")
