"""Tool calling's request and response shaping without a model: tools checked, the conversation
rendered in the default format, calls parsed whole and as a stream split at every character."""
from __future__ import annotations

import json

import pytest

from radixgen.constrained.structural_tag import parse_structural_tag
from radixgen.runtime.server.errors import APIError
from radixgen.runtime.server.tool_calls import ToolCallStream, parse_tool_calls, with_tool_calls
from radixgen.runtime.server.tools import parse_tools, render_messages, template_has_tools, tool_structural_tag

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
OUTPUT = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris {x}"}}\n</tool_call>\n'
          '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')


@pytest.mark.parametrize("tools, choice, message", [
    ([{"type": "retrieval"}], "auto", "only function tools"),
    ([{"type": "function", "function": {"name": "bad name"}}], "auto", "function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}], "auto", "of type 'object'"),
    ([WEATHER, WEATHER], "auto", "twice"),
    ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "not among the tools"),
    ([WEATHER], "sometimes", "tool_choice must be"),
    (None, "required", "tool_choice needs tools"),
])
def test_bad_tools_are_400s_naming_the_problem(tools, choice, message):
    with pytest.raises(APIError, match=message) as info:
        parse_tools(tools, choice, None)
    assert info.value.status == 400


@pytest.mark.parametrize("choice, kind, at_least_one", [
    ("auto", "triggered_tags", False), ("required", "tags_with_separator", True),
    ({"type": "function", "function": {"name": "get_time"}}, "tags_with_separator", True)])
def test_the_structural_tag_of_each_choice(choice, kind, at_least_one):
    req = parse_tools([WEATHER, CLOCK], choice, False)
    tag = tool_structural_tag(req)
    fmt = parse_structural_tag(tag)  # a spec our own parser accepts
    assert tag["format"]["type"] == kind and fmt.at_least_one == at_least_one and fmt.stop_after_first
    names = json.dumps(fmt.tags[0].schema)
    assert ("get_weather" in names) == (not isinstance(choice, dict))
    assert tool_structural_tag(parse_tools([WEATHER], "none", None)) is None


def test_default_format_renders_calls_and_results():
    req = parse_tools([WEATHER], "auto", None)
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}]
    out, tools = render_messages(messages, req, native=False)
    assert tools is None and [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert '"name": "get_weather"' in out[0]["content"] and "<tools>" in out[0]["content"]
    assert out[2]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert out[3]["content"] == "<tool_response>\n18 C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"


def test_arguments_that_are_not_json_are_written_back_as_they_are():
    """A call cut by max_tokens comes back in the history (the openai-agents SDK replays what it got):
    its text is rendered as the model wrote it, never a 400 that would end every later turn."""
    req = parse_tools([WEATHER], "auto", None)
    cut = [{"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Pa'}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "error: bad arguments"}]
    out, _ = render_messages(cut, req, native=False)
    assert out[1]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa}\n</tool_call>'
    native, _ = render_messages(cut, req, native=True)
    assert native[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Pa'


def test_parse_whole_output():
    content, calls = parse_tool_calls(OUTPUT)
    assert content == "Let me look."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris {x}"}
    assert calls[1]["function"]["arguments"] == "{}" and all(c["id"].startswith("call_") for c in calls)
    # cut by max_tokens inside the second call's arguments: a call with the unfinished text, as OpenAI
    cut = OUTPUT[:OUTPUT.rindex('"arguments": {}') + len('"arguments": ')] + '{"tz": "U'
    content, calls = parse_tool_calls(cut)
    assert content == "Let me look." and [c["function"]["arguments"] for c in calls] == ['{"city": "Paris {x}"}', '{"tz": "U']
    # cut before the arguments start: nothing of that call (a stream has sent nothing of it either)
    before = parse_tool_calls(OUTPUT[:OUTPUT.rindex('"arguments"')])[1]
    assert [c["function"] for c in before] == [calls[0]["function"]]
    alone = with_tool_calls({"index": 0, "message": {"role": "assistant", "content": '<tool_call>\n{"na'},
                             "finish_reason": "length"})
    assert alone["message"]["content"] is None and alone["finish_reason"] == "length"


def _streamed(text: str, step: int) -> tuple[str, list[tuple[str, str]]]:
    """Feed `text` in pieces of `step` characters -> (content, [(name, arguments)]) as a client
    reassembles the deltas."""
    stream = ToolCallStream()
    pieces = []
    for i in range(0, len(text), step):
        pieces += stream.feed(text[i:i + step], final=i + step >= len(text))
    content = "".join(p.get("content", "") for p in pieces)
    calls: dict[int, dict] = {}
    for p in pieces:
        for d in p.get("tool_calls", []):
            call = calls.setdefault(d["index"], {"name": "", "arguments": "", "id": None})
            if "id" in d:
                assert call["id"] is None and call["arguments"] == "", "id and name come first, once"
                call["id"], call["name"] = d["id"], d["function"]["name"]
            call["arguments"] += d["function"]["arguments"]
    return content, [(c["name"], c["arguments"]) for c in calls.values()]


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(OUTPUT)])
def test_stream_adds_up_to_the_whole(step):
    content, calls = _streamed(OUTPUT, step)
    _, whole = parse_tool_calls(OUTPUT)
    assert content.strip() == "Let me look." and "<tool" not in content
    assert calls == [(c["function"]["name"], c["function"]["arguments"]) for c in whole]


def test_stream_and_whole_agree_wherever_max_tokens_cuts():
    """Cut after every character: the streamed calls are the non-streamed ones, content aside from
    whitespace too, so a client sees one answer whichever way it asked."""
    for n in range(len(OUTPUT) + 1):
        content, whole = parse_tool_calls(OUTPUT[:n])
        streamed_content, streamed = _streamed(OUTPUT[:n], 1)
        assert streamed == [(c["function"]["name"], c["function"]["arguments"]) for c in whole], n
        assert streamed_content.strip() == (content or ""), n


def test_a_template_with_its_own_tool_format_gets_the_tools():
    qwen_like = "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>{% endif %}<tool_call>"
    assert template_has_tools(qwen_like) and not template_has_tools("{{ messages }}") and not template_has_tools(None)
    req = parse_tools([WEATHER], "required", None)
    messages = [{"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "3 C"}]
    out, tools = render_messages(messages, req, native=True)
    assert tools == [WEATHER | {"function": {**WEATHER["function"]}}]
    assert out[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}  # transformers wants objects
    assert out[1] == messages[1]
