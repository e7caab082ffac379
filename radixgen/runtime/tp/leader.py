"""Rank 0's side: start ranks 1..N-1 as worker processes, send them each step, stop them.

A worker runs `python -m radixgen.runtime.tp.worker` in a session of its own (a terminal's Ctrl-C
reaches rank 0 only, which then stops it). Start-up polls the store for each worker's "joined" and
"loaded" keys while checking that no worker has exited, so a worker that fails to start fails the
engine at once, naming it. A worker ends when rank 0 sends STOP, closes its stdin, or dies (its
stdin then reads EOF, its collectives raise: "Connection closed by peer").
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
import weakref

from ..config import EngineConfig
from ..errors import RankFailedError
from .comm import TPComm, connect, host_store
from .step import HEADER, STOP, StepInputs, pack

log = logging.getLogger("radixgen")
COLLECTIVE_TIMEOUT_S = 120.0  # a rank that does not join a collective within this is taken as failed
STARTUP_TIMEOUT_S = 900.0     # every rank's model load (they load at once, sharing the cores)
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05


def worker_command(config: EngineConfig, rank: int, port: int, num_slots: int) -> list[str]:
    return [sys.executable, "-m", "radixgen.runtime.tp.worker", "--rank", str(rank), "--port", str(port),
            "--num-slots", str(num_slots), "--config", json.dumps(dataclasses.asdict(config))]


class Leader:
    """The worker processes and rank 0's place in the group (`comm`)."""

    def __init__(self, config: EngineConfig, num_slots: int):
        """Start the workers and join the group with them; `config.model` must be resolved already
        (a directory), so the workers do not convert a GGUF file again."""
        size = config.tp_size
        self.store = host_store(size, COLLECTIVE_TIMEOUT_S)
        self.procs = [subprocess.Popen(worker_command(config, r, self.store.port, num_slots),
                                       stdin=subprocess.PIPE, start_new_session=True) for r in range(1, size)]
        self._reap = weakref.finalize(self, _stop_workers, self.procs)  # also at exit, or if never closed
        try:
            self._wait_for("joined", "starting")
            self.comm: TPComm = connect(self.store, 0, size, COLLECTIVE_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        log.info("tensor parallel: %d ranks, workers %s", size, [p.pid for p in self.procs])

    def wait_loaded(self) -> None:
        """Block until every worker has its shard and KV pool (after rank 0 loaded its own)."""
        self._wait_for("loaded", "loading the model")

    def _wait_for(self, key: str, doing: str) -> None:
        keys = [f"{key}/{r}" for r in range(1, len(self.procs) + 1)]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.store.check(keys):
            dead = self.dead_rank()
            if dead is not None:
                raise RankFailedError(f"{dead} while {doing} (its error is in the output above)")
            if time.monotonic() > deadline:
                raise RankFailedError(f"the tensor-parallel workers took over {STARTUP_TIMEOUT_S:.0f} s {doing}")
            time.sleep(POLL_S)

    def dead_rank(self) -> str | None:
        """'tensor-parallel rank r (pid p) exited with code c' for the first worker that exited."""
        for rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code is not None:
                return f"tensor-parallel rank {rank} (pid {proc.pid}) exited with code {code}"
        return None

    def send(self, step: StepInputs) -> None:
        """Wake every worker with the step's header, then broadcast its inputs."""
        header, payload = pack(step)
        dead = self.dead_rank()
        if dead is not None:
            raise RankFailedError(dead)
        for proc in self.procs:
            proc.stdin.write(header)
            proc.stdin.flush()
        self.comm.broadcast(payload)

    def failure(self, exc: BaseException) -> RankFailedError:
        """The error to stop the engine with after a step raised `exc` (a dead or silent rank, or
        rank 0's own failure mid-step: the ranks are out of step either way)."""
        if isinstance(exc, RankFailedError):
            return exc
        time.sleep(0.2)  # a rank that just crashed closed its sockets first: let its exit land
        dead = self.dead_rank()
        if dead:
            return RankFailedError(dead)
        if "Timed out" in str(exc):
            return RankFailedError(f"a tensor-parallel rank did not answer within {COLLECTIVE_TIMEOUT_S:.0f} s ({exc})")
        return RankFailedError(f"a tensor-parallel step failed ({type(exc).__name__}: {exc})")

    def close(self) -> None:
        """Stop the workers (STOP, then SIGKILL after STOP_TIMEOUT_S). Idempotent."""
        self._reap()


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            if proc.poll() is None:
                proc.stdin.write(HEADER.pack(STOP, 0, 0, 0, 0, 0, 0, 0))
            proc.stdin.close()
        except OSError:  # it is gone already (broken pipe)
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("tensor-parallel worker %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()
