"""The transformers baseline the benches compare against: batched greedy `generate`, left padding,
64 prompts a batch (shared by offline.py and prefix_reuse.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import torch


def in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) on a thread that ends with it, with the caller's torch thread count. Torch work on
    the bench's main thread would leave an idle OpenMP team beside the engine's, and libgomp then
    stops spinning between parallel regions, slowing the engine run that follows by ~50%."""
    n = torch.get_num_threads()

    def body() -> Any:
        torch.set_num_threads(n)  # OpenMP's thread count is per thread
        return fn(*args)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(body).result()


def hf_generate(model, prompts: list[list[int]], eos_id: int | list[int], max_new: int,
                batch: int = 64) -> list[list[int]]:
    """Outputs per prompt, each cut after its first EOS (counted, as radixgen counts it); eos_id may be
    a list (the first pads)."""
    eos_ids = eos_id if isinstance(eos_id, list) else [eos_id]
    eos_id = eos_ids[0]
    outs: list[list[int]] = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i: i + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([[eos_id] * (width - len(p)) + p for p in chunk])           # [b, width]
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=eos_id, eos_token_id=eos_ids)
        for row in gen[:, width:].tolist():
            outs.append(row[: next((k + 1 for k, t in enumerate(row) if t in eos_ids), len(row))])
    return outs
