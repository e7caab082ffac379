"""`python -m radixgen.runtime.tp.worker --rank R ...`: tensor-parallel rank R (>= 1), started by
rank 0 (leader.py). It loads its shard of the model and its own KV pool, then runs every forward
rank 0 sends (joining the all-reduces and the logits gather) until STOP or EOF on stdin.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import BinaryIO

import torch

from ..config import EngineConfig
from ..model_runner import ModelRunner
from .comm import connect, join_store
from .leader import COLLECTIVE_TIMEOUT_S
from .step import FORWARD, HEADER, payload_len, unpack


def serve(runner: ModelRunner, stdin: BinaryIO) -> None:
    """Run the steps rank 0 sends; return on STOP or when rank 0 has gone (EOF)."""
    with torch.inference_mode():
        while True:
            raw = stdin.read(HEADER.size)
            if len(raw) < HEADER.size:
                return
            header = HEADER.unpack(raw)
            if header[0] != FORWARD:
                return
            payload = runner.comm.broadcast(torch.empty(payload_len(header), dtype=torch.int64))
            runner.run(unpack(header, payload))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="radixgen.runtime.tp.worker")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--num-slots", type=int, required=True)
    parser.add_argument("--config", required=True, help="the EngineConfig as JSON")
    args = parser.parse_args(argv)
    config = EngineConfig(**json.loads(args.config))
    store = join_store(args.port, config.tp_size, COLLECTIVE_TIMEOUT_S)
    store.set(f"joined/{args.rank}", "1")
    comm = connect(store, args.rank, config.tp_size, COLLECTIVE_TIMEOUT_S)
    runner = ModelRunner(config, comm=comm, num_slots=args.num_slots)
    store.set(f"loaded/{args.rank}", "1")
    serve(runner, sys.stdin.buffer)


if __name__ == "__main__":
    main()
