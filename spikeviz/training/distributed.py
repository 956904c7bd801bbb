"""This process's place in a torchrun job: joining the process group and sharing rank 0's decisions."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if world <= 1:
            return cls(device=device)
        owns = not dist.is_initialized()
        if owns:
            if cuda:
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device, owns)

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's values on every rank (so every rank takes the same early-stopping decision)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return t.tolist()

    def close(self) -> None:
        if self.owns_group:
            dist.barrier()
            dist.destroy_process_group()
