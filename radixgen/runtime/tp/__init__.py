"""Tensor parallelism over torch.distributed (gloo on CPUs): rank 0 is the engine process, ranks
1..N-1 are worker processes that each hold a shard of the model and their own KV pool.

comm.py    the ranks' gloo group (timeouts on every collective)
shard.py   which weights each rank holds, and the modules that add the collectives
step.py    one forward's inputs, packed for the broadcast from rank 0
leader.py  rank 0's side: start the workers, send each step, stop them
worker.py  `python -m radixgen.runtime.tp.worker`: a rank's loop
"""
