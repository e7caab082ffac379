"""OpenAI tool calling, response side: the calls read out of the model's text, whole or as it streams.

A call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (tools.py); under a tool grammar
its JSON always parses and its arguments validate. `arguments` is the raw text the model wrote for
the arguments object, so a stream's fragments add up to exactly the string a non-streamed response
carries. Text outside the calls is the message's content (None when only whitespace). A call cut
by max_tokens is, as OpenAI returns it, a call whose `arguments` are the unfinished text (finish_reason
"length"), whole or streamed alike; one cut before its name is complete is dropped.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any, Callable

from .openai_protocol import chat_logprobs as chunk_logprobs
from .tools import CALL_BEGIN, CALL_END

# what precedes the arguments object in the envelope (our grammar writes "name" first)
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_TRAILING = "} \t\r\n"  # what may close the envelope after the arguments object


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _split(body: str) -> tuple[str, str] | None:
    """A call's JSON text -> (name, raw arguments text), None if it is not a call."""
    head = _HEAD.match(body)
    if head is None:
        return None
    try:
        name = json.loads(f'"{head.group(1)}"')
        _, end = json.JSONDecoder().raw_decode(body, head.end())
    except json.JSONDecodeError:
        return None
    if body[end:].strip(_TRAILING) or body[end:].count("}") != 1:
        return None
    return name, body[head.end():end]


def _call_end(body: str) -> tuple[int, tuple[str, str]] | None:
    """Where the first call in `body` (text after `<tool_call>`) ends, and (name, arguments); an
    end marker inside an argument string does not end it."""
    end = body.find(CALL_END)
    while end >= 0:
        parts = _split(body[:end])
        if parts is not None:
            return end, parts
        end = body.find(CALL_END, end + 1)
    return None


def _held_back(text: str, marker: str) -> int:
    """How many characters at the end of `text` could be the start of `marker`."""
    return next((n for n in range(min(len(marker), len(text)), 0, -1) if text.endswith(marker[:n])), 0)


def _unfinished_args(args: str) -> str:
    """The arguments text of a call not yet closed, less what may turn out to close the envelope."""
    return args[:len(args) - _held_back(args, CALL_END)].rstrip(_TRAILING)


def _unfinished_call(body: str) -> tuple[str, str] | None:
    """An unclosed call's text (after `<tool_call>`) -> (name, arguments so far); None before the
    arguments' first character, where a stream has sent nothing of it yet."""
    head = _HEAD.match(body)
    if head is None or head.end() >= len(body):
        return None
    return json.loads(f'"{head.group(1)}"'), _unfinished_args(body[head.end():])


def _call(name: str, args: str) -> dict[str, Any]:
    return {"id": call_id(), "type": "function", "function": {"name": name, "arguments": args}}


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """A whole output -> (content, tool_calls in OpenAI's shape); what ToolCallStream sends for the
    same text, also when the last call was cut by max_tokens."""
    calls, content, pos = [], [], 0
    while (start := text.find(CALL_BEGIN, pos)) >= 0:
        content.append(text[pos:start])
        body = text[start + len(CALL_BEGIN):]
        found = _call_end(body)
        if found is None:  # cut by max_tokens: the stream sent what is there
            cut = _unfinished_call(body)
            calls += [_call(*cut)] if cut is not None else []
            pos = len(text)
            break
        end, (name, args) = found
        calls.append(_call(name, args))
        pos = start + len(CALL_BEGIN) + end + len(CALL_END)
    content.append(text[pos:])
    joined = "".join(content).strip()
    return (joined or None), calls


class ToolCallStream:
    """One choice's text as it streams -> OpenAI delta pieces: {"content": ...} for text outside the
    calls (held back while it could be the start of `<tool_call>`, and while it is only whitespace),
    and {"tool_calls": [...]} for calls: index, id, type and name first, argument fragments after."""

    def __init__(self) -> None:
        self.text = ""
        self.done = 0            # chars of text already turned into deltas
        self.pending = ""        # whitespace held back from the content
        self.num_calls = 0
        self.in_call = False
        self.args_at = -1        # where the open call's arguments start in text; -1 before its name
        self.args_sent = 0       # chars of them sent

    def feed(self, delta: str, final: bool) -> list[dict[str, Any]]:
        self.text += delta
        out: list[dict[str, Any]] = []
        while True:
            piece = self._call_step() if self.in_call else self._content_step(final)
            if piece is None:
                return out
            out.extend(piece)

    def _content_step(self, final: bool) -> list[dict[str, Any]] | None:
        rest = self.text[self.done:]
        at = rest.find(CALL_BEGIN)
        if at >= 0:
            self.done += at + len(CALL_BEGIN)
            self.in_call, self.args_at, self.args_sent = True, -1, 0
            return self._content(rest[:at])
        keep = 0 if final else _held_back(rest, CALL_BEGIN)
        self.done += len(rest) - keep
        piece = self._content(rest[:len(rest) - keep])
        return piece or None

    def _content(self, text: str) -> list[dict[str, Any]]:
        self.pending += text
        if not self.pending.strip():
            return []
        text, self.pending = self.pending, ""
        return [{"content": text}]

    def _call_step(self) -> list[dict[str, Any]] | None:
        body = self.text[self.done:]
        index = self.num_calls
        out = []
        if self.args_at < 0:
            head = _HEAD.match(body)
            if head is None or head.end() >= len(body):  # wait for the arguments' first character
                return None
            self.args_at = self.done + head.end()
            fn = {"name": json.loads(f'"{head.group(1)}"'), "arguments": ""}
            out.append({"tool_calls": [{"index": index, "id": call_id(), "type": "function", "function": fn}]})
        found = _call_end(body)
        if found is not None:
            end, (_, args) = found
            self.done += end + len(CALL_END)
            self.in_call, self.num_calls = False, self.num_calls + 1
        else:  # the arguments so far
            args = _unfinished_args(self.text[self.args_at:])
        if len(args) > self.args_sent:
            out.append({"tool_calls": [{"index": index, "function": {"arguments": args[self.args_sent:]}}]})
            self.args_sent = len(args)
        return out if (out or not self.in_call) else None


def with_tool_calls(choice: dict[str, Any]) -> dict[str, Any]:
    """A chat choice whose content may hold calls -> content + message.tool_calls, finish_reason
    "tool_calls" when the output ended after them."""
    text = choice["message"]["content"]
    if CALL_BEGIN not in text:
        return choice
    content, calls = parse_tool_calls(text)
    if not calls:  # a call cut by max_tokens before its arguments: dropped, as the stream drops it
        return {**choice, "message": {**choice["message"], "content": content}}
    reason = "tool_calls" if choice["finish_reason"] == "stop" else choice["finish_reason"]
    return {**choice, "message": {"role": "assistant", "content": content, "tool_calls": calls},
            "finish_reason": reason}


def stream_piece() -> Callable[[Any], list[dict[str, Any]]]:
    """The SSE choices of one streamed engine chunk (a generation.StreamChunk), per choice
    index, with a last empty delta that carries the finish reason."""
    streams: dict[int, ToolCallStream] = {}

    def piece(chunk: Any) -> list[dict[str, Any]]:
        stream = streams.setdefault(chunk.index, ToolCallStream())
        deltas = stream.feed(chunk.delta, chunk.finished)
        logprobs = chunk_logprobs(chunk.meta)
        if logprobs and not deltas:
            deltas = [{}]
        out = [{"index": chunk.index, "delta": d, "logprobs": logprobs if i == 0 else None, "finish_reason": None}
               for i, d in enumerate(deltas)]
        if chunk.finished:
            reason = chunk.meta["finish_reason"]["type"]
            reason = "tool_calls" if stream.num_calls and reason == "stop" else reason
            out.append({"index": chunk.index, "delta": {}, "logprobs": None, "finish_reason": reason})
        return out
    return piece
