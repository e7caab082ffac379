"""Ray Data: one radixgen `Engine` per actor, for offline batch jobs over a cluster.

    import ray
    from radixgen.ray import RadixgenPredictor

    ds = ray.data.from_items([{"prompt": "The capital of France is"},
                              {"messages": [{"role": "user", "content": "Name a fruit."}],
                               "sampling_params": {"max_new_tokens": 8}}])
    out = ds.map_batches(RadixgenPredictor, concurrency=2, batch_size=64,
                         fn_constructor_kwargs={"dtype": "float32", "num_threads": 1,
                                                "sampling_params": {"temperature": 0, "max_new_tokens": 32}})
    for row in out.take_all():
        print(row["generated_text"], row["finish_reason"], row["cached_tokens"])

Ray Data owns the actors, the batching and the scheduling; this class only turns a batch of rows
into engine requests and back. It imports nothing of Ray (`pip install 'radixgen[ray]'` brings
Ray). A batch is submitted whole, so the engine batches it continuously and shares prefixes
across its rows through the radix cache.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from radixgen.runtime.engine import Engine
from radixgen.runtime.sampling_params import SamplingParams

# integer parameters: Arrow stores a column of ints with nulls in it as floats (3 -> 3.0)
INT_PARAMS = {f.name for f in dataclasses.fields(SamplingParams) if str(f.type).split(" | ")[0] == "int"}
OUTPUT_COLUMNS = ("generated_text", "prompt_tokens", "completion_tokens", "cached_tokens", "finish_reason", "error")


def plain(value: Any) -> Any:
    """A value as Ray Data hands it over (numpy arrays for lists, numpy scalars) -> plain Python."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def row_params(row: dict[str, Any]) -> dict[str, Any]:
    """A row's own sampling parameters. Arrow gives every row of a column the union of the keys
    used by any row, unset ones as None (or NaN in a numeric field): those are dropped, so the
    defaults apply; integer fields that came back as integral floats are ints again."""
    given = plain(row.get("sampling_params"))
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ValueError(f"sampling_params must be a dict, got {type(given).__name__}")
    out = {}
    for key, value in given.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if key in INT_PARAMS and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


class RadixgenPredictor:
    """A callable class for `Dataset.map_batches`: one Engine per actor.

    Constructor kwargs: any `Engine` argument (`model`, `dtype`, `num_threads`, ...) and
    `sampling_params`, the defaults every row gets unless it carries its own `sampling_params`.
    Rows hold `prompt` (text) or `messages` (a chat, through the model's template). Output rows
    hold everything they came with plus `generated_text`, `prompt_tokens`, `completion_tokens`,
    `cached_tokens`, `finish_reason` ("stop", "length" or "abort") and `error` (None, or why the
    engine refused that row, e.g. a schema it cannot compile: the other rows still run)."""

    def __init__(self, sampling_params: dict[str, Any] | None = None, **engine_kwargs: Any):
        self.defaults = dict(sampling_params or {})
        SamplingParams(**self.defaults)  # a bad default fails the actor at start, not batch by batch
        self.engine = Engine(**engine_kwargs)

    def __call__(self, batch: Any) -> Any:
        """`batch`: Ray's numpy format (a dict of columns) or a pandas DataFrame; -> the same kind."""
        columns = batch.to_dict("list") if hasattr(batch, "to_dict") and hasattr(batch, "columns") else batch
        names = list(columns)
        num_rows = len(columns[names[0]]) if names else 0
        rows = [{name: columns[name][i] for name in names} for i in range(num_rows)]
        added = self._generate(rows)
        if columns is batch:
            return {**batch, **{k: np.array(v, dtype=object) for k, v in added.items()}}
        return batch.assign(**added)

    def _generate(self, rows: list[dict[str, Any]]) -> dict[str, list]:
        prompts, params = [], []
        for i, row in enumerate(rows):
            try:
                prompts.append(self._prompt_ids(row))
                sp = SamplingParams(**{**self.defaults, **row_params(row)})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"row {i} of the batch: {exc}") from None
            if sp.n != 1:
                raise ValueError(f"row {i} of the batch: n must be 1 here (one output row per input row), got {sp.n}")
            params.append(sp)
        outs = self.engine.generate(input_ids=prompts, sampling_params=params) if rows else []
        added: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
        for out in outs:
            meta, reason = out["meta_info"], out["meta_info"]["finish_reason"] or {}
            added["generated_text"].append(out["text"])
            for key in ("prompt_tokens", "completion_tokens", "cached_tokens"):
                added[key].append(meta[key])
            added["finish_reason"].append(reason.get("type"))
            added["error"].append(reason.get("message") if reason.get("type") == "abort" else None)
        return added

    def _prompt_ids(self, row: dict[str, Any]) -> list[int]:
        prompt, messages = plain(row.get("prompt")), plain(row.get("messages"))
        if (prompt is None) == (messages is None):
            raise ValueError("each row needs exactly one of 'prompt' and 'messages'")
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt:
                raise ValueError("'prompt' must be a non-empty string")
            return self.engine.tokenizer.encode(prompt)
        return self.engine.apply_chat_template(messages)

    def __del__(self) -> None:  # the actor is going away: stop the engine thread
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
