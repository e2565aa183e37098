"""Data-parallel training under ``torchrun`` (one process per device; gloo on CPU, NCCL on GPU).

``setup`` reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); without it the run is one process. The
caller shards each global batch by rank, wraps the model in DistributedDataParallel and lets only the main
process evaluate, log and write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kgutil.device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def shard(self, indices: list[int], step_size: int) -> tuple[list[int], float]:
        """This rank's part of a micro-batch (all ranks' examples) and its loss weight n·world/N, with N the
        examples of the whole optimiser step: DDP averages gradients over ranks, so the weighted micro-batch
        means add up to the mean over the step's examples, whatever the split (a rank left without examples
        repeats one with weight 0)."""
        size = -(-len(indices) // self.world)
        mine = indices[self.rank * size:(self.rank + 1) * size]
        if not mine:
            return indices[:1], 0.0
        return mine, len(mine) * self.world / step_size


def setup(device_name: str) -> Dist:
    """This process's rank, the world size and its device; joins the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return Dist(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)
