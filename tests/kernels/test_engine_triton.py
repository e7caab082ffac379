"""The model's attention goes through one signature: swapping the torch reference for the Triton
kernels (interpreted on the CPU here) must change nothing but speed."""
from __future__ import annotations

import pytest

import radixgen


@pytest.mark.parametrize("page_size", [1, 16])
def test_engine_steps_with_triton_match_the_torch_path(tiny_dir, triton_kernels, page_size):
    prompts = [list(range(200, 213)), list(range(300, 305)), list(range(400, 430))]
    params = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
    outs = {}
    for backend in ("reference", "triton"):
        with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=512, page_size=page_size,
                             attention_backend=backend) as eng:
            first = eng.generate(input_ids=prompts, sampling_params=params)
            again = eng.generate(input_ids=prompts, sampling_params=params)  # extend over a cached prefix
            outs[backend] = [o["output_ids"] for o in first + again]
            if page_size == 1:
                assert sum(o["meta_info"]["cached_tokens"] for o in again) > 0
    assert outs["triton"] == outs["reference"]
