"""`radixgen serve --tp 2`: a real server process whose engine runs as two ranks over gloo answers
like a one-process engine (greedy, float32, a tiny random model), and SIGTERM stops its worker rank."""
from __future__ import annotations

import os
import re
import time

import httpx
import pytest

import radixgen
from radixgen.runtime.server.launch import launch_server

PROMPT = [5, 17, 300, 4200, 9, 77, 1024]
PARAMS = {"temperature": 0, "max_new_tokens": 8, "min_new_tokens": 8}


@pytest.mark.slow  # two processes load the model and import torch: ~20 s on 2 cores
def test_serve_tp2_answers_like_one_rank_and_stops_its_worker(tiny_dir, tmp_path):
    with radixgen.Engine(model=tiny_dir, dtype="float32", skip_warmup=True, max_total_tokens=4000) as engine:
        expected = engine.generate(input_ids=PROMPT, sampling_params=PARAMS)["output_ids"]
    server = launch_server(["--model", tiny_dir, "--tp", "2", "--dtype", "float32", "--skip-warmup",
                            "--max-total-tokens", "4000"], tmp_path / "server.log")
    try:
        reply = httpx.post(server.url + "/generate", json={"input_ids": PROMPT, "sampling_params": PARAMS},
                           timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["output_ids"] == expected
        pids = re.search(r"tensor parallel: 2 ranks, workers \[(\d+)\]", server.log_path.read_text())
        assert pids, server.log_tail()
        worker = int(pids.group(1))
        assert _alive(worker)
    finally:
        code = server.stop()
    assert code in (0, -15), server.log_tail()
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker rank outlived the server"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
