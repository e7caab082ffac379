"""Example programs in SGLang's language: few-shot, multi-turn chat, fork/join, typed and constrained
gens, select. Written once; the tests run them on every backend (in-process Engine, HTTP server)
and bench/programs.py times them. Greedy decoding and short outputs keep them fast on a CPU."""
from __future__ import annotations

import radixgen.frontend as sgl  # stands in for `import sglang as sgl`: the programs are SGLang's

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"),
            ("Canada", "Ottawa"), ("Spain", "Madrid"), ("Kenya", "Nairobi"), ("Peru", "Lima")]
FEW_SHOT = "Answer each question with the name of a city.\n\n" + "".join(
    f"Q: What is the capital of {country}?\nA: {city}\n\n" for country, city in CAPITALS[1:])
# A long shared preamble (~450 tokens) for the prefix-reuse test and the benchmark.
LONG_PREAMBLE = ("You are a careful assistant. Read the facts, then answer the question in a few words.\n"
                 + "".join(f"Fact {i}: the capital of {c} is {city}; it is a large city with a long history, "
                           f"many museums, busy markets and a river or a coast nearby.\n"
                           for i, (c, city) in enumerate(CAPITALS * 2)) + "\n")

PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                 "required": ["name", "age"], "additionalProperties": False}
IP_REGEX = r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)"


@sgl.function
def few_shot_qa(s, question):
    s += FEW_SHOT + "Q: " + question + "\nA:"
    s += sgl.gen("answer", max_tokens=8, stop="\n")


@sgl.function
def long_preamble_qa(s, question):
    s += LONG_PREAMBLE + "Question: " + question + "\nAnswer:"
    s += sgl.gen("answer", max_tokens=6, stop="\n")


@sgl.function
def chat_roles(s, question):
    """Roles as expressions: s += user(...)."""
    s += sgl.system("You are a helpful assistant. Answer briefly.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=16))
    s += sgl.user("Say it again in one word.")
    s += sgl.assistant(sgl.gen("answer_2", max_tokens=8))


@sgl.function
def chat_scopes(s, question):
    """The same conversation through `with s.user():` and the *_begin / *_end forms."""
    with s.system():
        s += "You are a helpful assistant. Answer briefly."
    with s.user():
        s += question
    with s.assistant():
        s += sgl.gen("answer_1", max_tokens=16)
    s += sgl.user_begin()
    s += "Say it again in one word."
    s += sgl.user_end()
    s += sgl.assistant_begin() + sgl.gen("answer_2", max_tokens=8) + sgl.assistant_end()


@sgl.function
def capital_select(s, country, method=sgl.token_length_normalized):
    s += FEW_SHOT + f"Q: What is the capital of {country}?\nA:"
    s += sgl.select("city", [" Paris", " London", " Berlin", " Madrid"], choices_method=method)


@sgl.function
def typed_gens(s):
    s += "Q: How many legs does a spider have?\nA: " + sgl.gen_int("legs", max_tokens=4)
    s += "\nQ: Describe a person as JSON with a name and an age.\nA: "
    s += sgl.gen("person", json_schema=PERSON_SCHEMA, max_tokens=40)
    s += "\nQ: What is the IP address of localhost?\nA: " + sgl.gen("ip", regex=IP_REGEX, max_tokens=16)


@sgl.function
def tips(s, topic):
    s += "Two tips about staying fit:\nTip 1: Walk every day.\nTip 2: Eat more vegetables.\n\n"
    s += f"Two tips about {topic}:\n"
    forks = s.fork(2)
    forks += lambda i: f"Tip {i + 1}:" + sgl.gen("tip", max_tokens=12, stop="\n")
    forks.join()
    s += "Tip 1:" + s["tip"][0] + "\nTip 2:" + s["tip"][1] + "\nIn short:" + sgl.gen("summary", max_tokens=12)


TOOL = {"france": "Paris is the capital of France.", "japan": "Tokyo is the capital of Japan."}


def search(query: str) -> str:
    """A stand-in tool, deterministic so that the loop can be tested."""
    hits = [text for key, text in TOOL.items() if key in query.lower()]
    return hits[0] if hits else "No result."


REACT = ("Answer the question by searching, then finish with the answer.\n\n"
         "Question: What is the capital of Italy?\nThought 1: I should search for Italy.\n"
         "Action 1: Search[Italy]\nObservation 1: Rome is the capital of Italy.\n"
         "Thought 2: The answer is Rome.\nAction 2: Finish[Rome]\n\n")


@sgl.function
def react(s, question, max_steps=3):
    """A ReAct loop: the program's Python picks the next step from what the model selected."""
    s += REACT + "Question: " + question + "\n"
    for step in range(1, max_steps + 1):
        s += f"Thought {step}:" + sgl.gen("thought", max_tokens=16, stop="\n") + "\n"
        s += f"Action {step}:" + sgl.select("action", [" Search", " Finish"])
        if s["action"] == " Finish":
            s += "[" + sgl.gen("answer", max_tokens=8, stop="]") + "]\n"
            break
        s += "[" + sgl.gen("query", max_tokens=8, stop="]") + "]\n"
        s += f"Observation {step}: " + search(s["query"]) + "\n"
    s["steps"] = step


@sgl.function
def fails_on_bad(s, x):
    """Raises for x == "bad": one bad input must not stop a batch."""
    s += "Count: " + x + ","
    if x == "bad":
        raise ValueError("bad input")
    s += sgl.gen("next", max_tokens=3)


@sgl.function
def nested_roles(s):
    """An error found while executing (a turn opened inside another): it goes to s.error()."""
    s += sgl.user_begin() + "Hi"
    s += sgl.assistant_begin()
    s += sgl.gen("never", max_tokens=4)
