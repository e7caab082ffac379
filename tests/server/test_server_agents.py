"""An agent framework nobody here wrote, OpenAI's `openai-agents` SDK, driving the real server through
its Chat Completions integration (OpenAIChatCompletionsModel over AsyncOpenAI): a two-tool task with
forced tool use runs to completion, streamed and not. The tools record what the SDK called them with,
and each call validates against the schema the SDK itself made from the tool's signature. The model is
a 135M one: the tests check structure (calls, turns, shapes), never what it knows."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
import openai
import pytest

agents = pytest.importorskip("agents", reason="the openai-agents SDK is in the test extra: pip install -e '.[test]'")
from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, RunContextWrapper, Runner,  # noqa: E402
                    StopAtTools, function_tool)
from openai.types.responses import ResponseFunctionToolCall  # noqa: E402

pytestmark = pytest.mark.slow
ASK = "What is the weather in Paris, in Fahrenheit?"


@dataclass
class Task:
    """The run's context: what the tools were called with, and the bodies the SDK sent."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def called(self, name: str) -> bool:
        return any(n == name for n, _ in self.calls)


def get_weather(ctx: RunContextWrapper[Task], city: str) -> str:
    """Current temperature in a city, in degrees Celsius."""
    ctx.context.calls.append(("get_weather", {"city": city}))
    return json.dumps({"city": city, "celsius": 18.0})


def convert_temperature(ctx: RunContextWrapper[Task], celsius: float, unit: Literal["fahrenheit", "kelvin"]) -> str:
    """Convert a temperature in degrees Celsius to another unit."""
    ctx.context.calls.append(("convert_temperature", {"celsius": celsius, "unit": unit}))
    return _converted(celsius, unit)


def _converted(celsius: float, unit: str) -> str:
    return json.dumps({unit: celsius * 9 / 5 + 32 if unit == "fahrenheit" else celsius + 273.15})


def _before_weather(ctx: RunContextWrapper[Task], agent: Any) -> bool:
    return not ctx.context.called("get_weather")


def _after_weather(ctx: RunContextWrapper[Task], agent: Any) -> bool:
    return ctx.context.called("get_weather")


# both offered at once, and a chain that offers get_weather until it was called, then the converter
TOOLS = [function_tool(get_weather), function_tool(convert_temperature)]
CHAIN = [function_tool(get_weather, is_enabled=_before_weather), function_tool(convert_temperature, is_enabled=_after_weather)]
SCHEMAS = {t.name: t.params_json_schema for t in TOOLS}


def _model(server, task: Task) -> OpenAIChatCompletionsModel:
    """The SDK's Chat Completions model on our server; every request body is kept in `task`."""
    async def keep(request) -> None:
        task.bodies.append(json.loads(request.content))
    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [keep]})
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=600,
                                http_client=http)
    return OpenAIChatCompletionsModel(model="default", openai_client=client)


def _check_calls(task: Task, items: list) -> None:
    """The SDK ran each call it got, with arguments that validate against its own schema."""
    assert task.calls, "no tool was called"
    for name, kwargs in task.calls:
        jsonschema.validate(kwargs, SCHEMAS[name])
    for item in items:
        assert item.call_id.startswith("call_") and item.name in SCHEMAS
        jsonschema.validate(json.loads(item.arguments), SCHEMAS[item.name])


async def _run(agent: Agent, task: Task, streamed: bool, max_turns: int):
    """-> (the run's result, the SDK's stream events or [])."""
    if not streamed:
        return await Runner.run(agent, ASK, context=task, max_turns=max_turns), []
    result = Runner.run_streamed(agent, ASK, context=task, max_turns=max_turns)
    return result, [event async for event in result.stream_events()]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_two_tool_task_runs_to_completion_with_forced_calls(server, streamed: bool, assert_idle) -> None:
    """tool_choice "required" on every turn (reset_tool_choice off); get_weather is offered until it
    has been called, then convert_temperature, whose result ends the run (StopAtTools)."""
    agents.set_tracing_disabled(True)  # its traces would be uploaded to OpenAI: the network is closed here
    task = Task()
    agent = Agent(name="weather", instructions="Look up the weather, then convert it.", model=_model(server, task),
                  tools=CHAIN, reset_tool_choice=False,
                  tool_use_behavior=StopAtTools(stop_at_tool_names=["convert_temperature"]),
                  model_settings=ModelSettings(tool_choice="required", parallel_tool_calls=False, temperature=0,
                                               max_tokens=60))
    result, events = asyncio.run(_run(agent, task, streamed, max_turns=3))

    assert [name for name, _ in task.calls] == ["get_weather", "convert_temperature"]
    assert result.final_output == _converted(**task.calls[1][1])  # the converter's result ended the run
    items = [item for r in result.raw_responses for item in r.output]
    assert all(isinstance(item, ResponseFunctionToolCall) for item in items), items  # calls only, no text
    _check_calls(task, items)
    assert [b["tool_choice"] for b in task.bodies] == ["required", "required"]
    assert [[t["function"]["name"] for t in b["tools"]] for b in task.bodies] == [["get_weather"], ["convert_temperature"]]
    # the second turn sent the first call and its result back, and the server took them
    history = task.bodies[1]["messages"]
    assert [m["role"] for m in history[-2:]] == ["assistant", "tool"]
    assert history[-1]["tool_call_id"] == history[-2]["tool_calls"][0]["id"] == items[0].call_id
    if streamed:
        kinds = {getattr(e, "name", None) or e.data.type for e in events if e.type != "agent_updated_stream_event"}
        assert {"tool_called", "tool_output", "response.function_call_arguments.delta"} <= kinds, kinds
    else:
        assert all(r.usage.input_tokens > 0 and r.usage.output_tokens > 0 for r in result.raw_responses)
    assert_idle()


def test_sdk_defaults_force_the_first_turn_then_the_model_answers(server, assert_idle) -> None:
    """The SDK's own defaults with tool_choice "required": parallel calls allowed, the first turn is
    forced, then reset_tool_choice leaves the model free, and the run ends on its text answer. A 135M
    model tends to write call after call until max_tokens cuts one: the cut call comes back as OpenAI
    returns it, the SDK reports its bad arguments to the model and sends it back, and the run goes on."""
    agents.set_tracing_disabled(True)
    task = Task()
    agent = Agent(name="weather", instructions="Answer with the tools.", model=_model(server, task), tools=TOOLS,
                  model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=60))
    result, _ = asyncio.run(_run(agent, task, streamed=False, max_turns=4))

    assert isinstance(result.final_output, str)
    first = [item for item in result.raw_responses[0].output if isinstance(item, ResponseFunctionToolCall)]
    assert first and len(result.raw_responses) == len(task.bodies) <= 4
    _check_calls(task, [])
    assert task.bodies[0]["tool_choice"] == "required" and all("tool_choice" not in b for b in task.bodies[1:])
    assert_idle()
