"""One process or many: the process group, the device of each process, and reductions across them.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``) a run joins a process
group, NCCL on GPUs and gloo on CPUs, even with one process (``--nproc-per-node 1`` runs the code path of
many: DistributedDataParallel and the collectives); launched plainly it is a single process and every
reduction is the identity, so the training code has a single path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device


@dataclass
class DistEnv:
    """Where this process stands among the processes of one run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    group: bool = False
    """Whether this process belongs to a process group (launched by torchrun)."""

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the run has a process group: collectives, DistributedDataParallel (torchrun, any size)."""
        return self.group

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``values`` over all processes (in float64, on the run's device)."""
        if not self.distributed:
            return values
        # NCCL reduces only GPU tensors; gloo reduces CPU ones: the run's device fits its backend.
        total = values.to(self.device, torch.float64)
        dist.all_reduce(total)
        return total.to(values.device)

    def broadcast_state(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's weights and buffers (BatchNorm running statistics, which each
        process updates from its own share of the batch), so that they evaluate alike."""
        if self.distributed:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto", timeout_minutes: int = 30) -> DistEnv:
    """Join torchrun's process group if launched by it; otherwise a single process on ``device``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and "LOCAL_RANK" not in os.environ:  # torchrun sets LOCAL_RANK, even for one process
        return DistEnv(0, 1, 0, resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): start "
                             "no more processes per node than it has GPUs (--nproc-per-node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    elif dev.type == "mps":
        raise ValueError("distributed training on Apple MPS is not supported; use --device cpu or one process")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistEnv(rank, world_size, local_rank, dev, group=True)
