"""OpenAI tool calling, request side: the tools and tool_choice checked, the conversation rendered
with them, and the structural tag that makes every call the model writes parse and validate.

The call format is Hermes' (Qwen2.5's and NousResearch's), used wherever the model's chat template
has no tool format of its own, as SmolLM2's has not:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

The tools are listed in the system prompt (DEFAULT_TOOL_PROMPT) and tool results come back to the
model in a user turn, each as `<tool_response>\\n...\\n</tool_response>`. A template that renders
tools itself in this format (its source names `<tool_call>`, as Qwen2.5's does) is given the tools
and the messages as transformers expects them instead. What the model may write:

- tool_choice "none": free text, no grammar, no tools in the prompt;
- "auto": free text; once the model writes `<tool_call>` the rest of the call is constrained to a
  valid call of one of the tools (a structural tag, constrained/structural_tag.py);
- "required" / a named function: calls only (one, or one or more when parallel_tool_calls).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import APIError

CALL_BEGIN, CALL_END = "<tool_call>", "</tool_call>"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
DEFAULT_TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}}\n</tool_call>")


@dataclass(frozen=True)
class ToolRequest:
    """functions: each {"name", "description"?, "parameters"}; choice: "none" | "auto" | "required" |
    "function" (then `name` is the forced one); parallel: more than one call allowed."""
    functions: tuple[dict[str, Any], ...]
    choice: str
    name: str | None
    parallel: bool

    @property
    def active(self) -> bool:
        return self.choice != "none"


def parse_tools(tools: Any, tool_choice: Any, parallel: bool | None) -> ToolRequest | None:
    """The request's tool fields -> ToolRequest (None without tools); a 400 naming what is wrong."""
    if not tools:
        if tool_choice not in (None, "none"):
            raise APIError(400, "tool_choice needs tools", param="tool_choice")
        return None
    if not isinstance(tools, list):
        raise APIError(400, "tools must be a list of {\"type\": \"function\", \"function\": {...}}", param="tools")
    functions = tuple(_function(t, i) for i, t in enumerate(tools))
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise APIError(400, f"tools name a function twice: {names}", param="tools")
    choice, name = _choice(tool_choice, names)
    return ToolRequest(functions, choice, name, True if parallel is None else bool(parallel))


def _function(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise APIError(400, f"{where} must be {{\"type\": \"function\", \"function\": {{...}}}}; "
                       "only function tools are supported", param=where)
    fn = tool["function"]
    if not isinstance(fn.get("name"), str) or not NAME_RE.match(fn["name"]):
        raise APIError(400, f"{where}.function.name must be 1-64 letters, digits, '_' or '-', got "
                       f"{fn.get('name')!r}", param=where)
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise APIError(400, f"{where}.function.parameters must be a JSON schema of type 'object'", param=where)
    out = {"name": fn["name"], "parameters": params}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    return out


def _choice(tool_choice: Any, names: list[str]) -> tuple[str, str | None]:
    if tool_choice is None:
        return "auto", None
    if tool_choice in ("none", "auto", "required"):
        return tool_choice, None
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    if not isinstance(fn, dict) or tool_choice.get("type") != "function" or not isinstance(fn.get("name"), str):
        raise APIError(400, "tool_choice must be 'none', 'auto', 'required' or "
                       "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")
    if fn["name"] not in names:
        raise APIError(400, f"tool_choice names the function {fn['name']!r}, which is not among the tools "
                       f"{names}", param="tool_choice")
    return "function", fn["name"]


def tool_structural_tag(req: ToolRequest) -> dict[str, Any] | None:
    """The structural tag that constrains the calls (None for tool_choice none)."""
    if not req.active:
        return None
    fns = [f for f in req.functions if req.name is None or f["name"] == req.name]
    tag = {"begin": CALL_BEGIN + "\n", "content": {"type": "json_schema", "json_schema": _envelope(fns)},
           "end": "\n" + CALL_END}
    flags = {"stop_after_first": not req.parallel}
    if req.choice == "auto":
        fmt = {"type": "triggered_tags", "triggers": [CALL_BEGIN], "tags": [tag], "at_least_one": False, **flags}
    else:
        fmt = {"type": "tags_with_separator", "tags": [tag], "separator": "\n", "at_least_one": True, **flags}
    return {"type": "structural_tag", "format": fmt}


def _envelope(fns: list[dict[str, Any]]) -> dict[str, Any]:
    """{"name": const, "arguments": parameters} for each function; the parameters' $defs move to the
    root, where their "#/$defs/..." references point once the parameters are nested."""
    defs: dict[str, Any] = {}
    options = []
    for fn in fns:
        params = dict(fn["parameters"])
        for key in ("$defs", "definitions"):
            for name, sub in (params.pop(key, None) or {}).items():
                if defs.setdefault(key, {}).setdefault(name, sub) != sub:
                    raise APIError(400, f"two tools define {key}/{name} differently; rename one", param="tools")
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    root = options[0] if len(options) == 1 else {"anyOf": options}
    return {**root, **defs}


# ---- the conversation ----
def template_has_tools(chat_template: Any) -> bool:
    """Whether the template renders tools in the <tool_call> format itself (Qwen2.5, Hermes)."""
    return isinstance(chat_template, str) and "tools" in chat_template and CALL_BEGIN in chat_template


def render_messages(messages: list[dict[str, Any]], req: ToolRequest | None,
                    native: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages (content already text) -> (messages for the chat template, tools for its `tools=`).
    Assistant tool calls and tool results are written in the call format unless `native`."""
    shown = req is not None and req.active
    if native:
        tools = [{"type": "function", "function": f} for f in req.functions] if shown else None
        return [_native(m, i) for i, m in enumerate(messages)], tools
    out: list[dict[str, Any]] = []
    after_result = False  # consecutive tool results share one user turn
    for i, m in enumerate(messages):
        if m["role"] == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if after_result:
                out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block})
            after_result = True
            continue
        after_result = False
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = [_call_text(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(m["tool_calls"])]
            out.append({"role": "assistant", "content": "\n".join(filter(None, [m.get("content") or "", *calls]))})
        else:
            out.append({k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id", "name")})
    if shown:
        listing = DEFAULT_TOOL_PROMPT.format(tools="\n".join(json.dumps({"type": "function", "function": f})
                                                             for f in req.functions))
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{listing}"}
        else:
            out.insert(0, {"role": "system", "content": listing})
    return out, None


class RawArguments(str):
    """Arguments that are not JSON (a call cut by max_tokens, as this server and OpenAI return it, which
    clients such as the openai-agents SDK send back): written back as they are rather than refused,
    so that one cut call does not make every later turn of the conversation a 400."""


def _call_text(call: Any, where: str) -> str:
    name, args = _call_parts(call, where)
    text = args if isinstance(args, RawArguments) else json.dumps(args)
    return f'{CALL_BEGIN}\n{{"name": {json.dumps(name)}, "arguments": {text}}}\n{CALL_END}'


def _call_parts(call: Any, where: str) -> tuple[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise APIError(400, f"{where} must be {{\"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}",
                       param="messages")
    args = fn.get("arguments", "{}")
    if isinstance(args, str):
        try:
            args = json.loads(args or "{}")
        except json.JSONDecodeError:
            args = RawArguments(args)
    return fn["name"], args


def _native(m: dict[str, Any], i: int) -> dict[str, Any]:
    """transformers' convention: tool call arguments as objects."""
    if m["role"] == "assistant" and m.get("tool_calls"):
        calls = [_call_parts(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(m["tool_calls"])]
        return {**m, "content": m.get("content") or "",
                "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]}
    return m
