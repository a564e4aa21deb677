"""Data-parallel runs over ``torch.distributed``: process groups, the sharding rule, local launches.

A data-parallel run holds θ, the integrator and the eigensolvers whole on every rank and splits
only the data: each rank keeps a shard of the training subset, and every pass over the data
(loss, gradient, H·V / G·V / R·V blocks, the analysis' per-sample expectations) sums its shard's
contributions and all-reduces them (:class:`eoslab.curvature.Reduction`), normalised by the global
N. All ranks then see the same numbers and take the same steps; the trajectory equals the
one-process trajectory to round-off (the sums are only regrouped).

* Sharding rule (:func:`shard_slice`): the subset, in its drawn order, is cut into ``world``
  contiguous blocks whose sizes differ by at most one (the larger ones first), rank r keeps block r.
* Backends: gloo when the model lives on the CPU, nccl on CUDA (rank r then uses ``cuda:LOCAL_RANK``).
* Launch: ``eoslab train CONFIG --out DIR --nproc N`` spawns N local processes (:func:`launch`);
  under ``torchrun`` the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``) initialises the group (:func:`process_group_from_env`). Rank 0 writes the run
  directory; the others write nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0 (or the only process): the one that writes files."""
    return world()[0] == 0


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """The samples of rank ``rank`` out of ``world_size``: contiguous blocks of sizes ⌈n/w⌉ or ⌊n/w⌋."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    if n < world_size:
        raise ValueError(f"{n} samples cannot be split over {world_size} processes (each needs at least one)")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def backend_for(device: str) -> str:
    """``"nccl"`` for a CUDA device, else ``"gloo"``."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def rank_device(device: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device in a group of more than one
    process (one GPU per process), else ``device`` unchanged.
    """
    if str(device).startswith("cuda") and world()[1] > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', world()[0]))}"
    return device


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; tensors included); ``obj`` itself for one process."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@contextlib.contextmanager
def process_group_from_env(device: str) -> Iterator[bool]:
    """Initialise the default process group from ``torchrun``'s environment when ``WORLD_SIZE`` > 1
    and none is initialised yet (destroyed on exit); yields whether one is active.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        yield world()[1] > 1
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://")
    try:
        yield True
        dist.barrier()  # leave together, so no rank tears the group down under another
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable[..., int], nproc: int, port: int, device: str, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc)
    )
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    with process_group_from_env(device):
        code = fn(*args)
    if code:
        raise SystemExit(code)


def launch(fn: Callable[..., int], nproc: int, *args: Any, device: str = "cpu") -> int:
    """Run ``fn(*args)`` in ``nproc`` local processes forming one process group (gloo for a CPU
    ``device``, nccl for CUDA); ``fn`` returns an exit code. Returns 0 when every process returned
    0, else the first non-zero exit code (the other processes are then stopped). ``fn`` must be
    importable (a module-level function): the processes are started with ``spawn``.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    context = mp.start_processes(
        _worker, args=(fn, nproc, _free_port(), device, args), nprocs=nproc, join=False, start_method="spawn"
    )
    try:
        while not context.join():
            pass
    except mp.ProcessExitedException:
        # the first exit code a process chose (a signal or a crash while the others stop is 1)
        codes = [p.exitcode for p in context.processes]
        return next((c for c in codes if c is not None and c > 0), 1)
    except mp.ProcessRaisedException as e:
        last = [line for line in str(e).strip().splitlines() if line.strip()]
        raise RuntimeError(f"a data-parallel process failed: {last[-1] if last else e}") from None
    return 0
