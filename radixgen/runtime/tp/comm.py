"""The ranks' process group: gloo over loopback, made from a TCPStore that rank 0 hosts.

A standalone ProcessGroupGloo (not torch.distributed's global default group), so an engine owns its
group and a process may hold several engines. Every collective waits at most `timeout_s`: a rank
that stops answering makes the others raise instead of hanging forever. A rank that dies closes its
sockets, and the others raise at once ("Connection closed by peer").
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist

HOST = "127.0.0.1"  # the ranks of one engine run on one host: gloo binds to loopback only


@dataclass
class TPComm:
    """This process's place among the engine's ranks; rank 0 is the engine process."""
    rank: int
    size: int
    store: dist.TCPStore
    group: dist.ProcessGroupGloo

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum x over the ranks, in place (row-parallel outputs, vocab-parallel embeddings)."""
        self.group.allreduce([x]).wait()
        return x

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Rank 0's x into every rank's x (same shape and dtype on all), in place."""
        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self.group.broadcast([x], opts).wait()
        return x

    def gather_last_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Each rank's x [N, V / size] -> on rank 0 the ranks' pieces side by side, [N, V]; the other
        ranks get their own x back (only rank 0 samples)."""
        opts = dist.GatherOptions()
        opts.rootRank = 0
        x = x.contiguous()
        out = [[torch.empty_like(x) for _ in range(self.size)]] if self.rank == 0 else []
        self.group.gather(out, [x], opts).wait()
        return torch.cat(out[0], dim=-1) if self.rank == 0 else x


def host_store(size: int, timeout_s: float) -> dist.TCPStore:
    """Rank 0's rendezvous store on a free loopback port (store.port says which)."""
    return dist.TCPStore(HOST, 0, size, is_master=True, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=timeout_s))


def join_store(port: int, size: int, timeout_s: float) -> dist.TCPStore:
    return dist.TCPStore(HOST, port, size, is_master=False, timeout=datetime.timedelta(seconds=timeout_s))


def connect(store: dist.TCPStore, rank: int, size: int, timeout_s: float) -> TPComm:
    """Make the gloo group (blocks until every rank has called this, or the store's timeout)."""
    opts = dist.ProcessGroupGloo._Options()
    opts._timeout = datetime.timedelta(seconds=timeout_s)
    opts._devices = [dist.ProcessGroupGloo.create_device(hostname=HOST)]
    return TPComm(rank, size, store, dist.ProcessGroupGloo(store, rank, size, opts))
