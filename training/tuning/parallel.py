"""Data parallelism over the processes torchrun starts (one per GPU, or several on the CPU), on
PyTorch's own ``torch.distributed`` (gloo on the CPU, NCCL on GPUs).

Every rank plans the same batches (same seed); each computes its share of a batch (every
``world``-th example), its loss normalized by the whole batch's output-token count, and the
adapter's gradients are summed across ranks before the optimizer step. So a step, its loss and
the curve mean what they mean on one process, whatever the number of processes, and a batch that
does not divide evenly needs no special case. Only rank 0 reports progress and writes files; it
also decides when to stop, for everyone. With ``shard_model`` each rank also holds only its share
of the weights (``training.tuning.sharding``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        """Rank 0: reports progress, writes checkpoints and the adapter, decides to stop."""
        return self.rank == 0

    def share(self, indices: Sequence[int]) -> list[int]:
        """This rank's examples of a batch."""
        return list(indices[self.rank::self.world])

    def portion(self, indices: Sequence[int], every_rank_runs: bool) -> tuple[list[int], bool]:
        """This rank's examples of a batch and whether they count. A sharded model
        (``training.tuning.sharding``) needs every rank in every forward and backward: a rank
        with no example of the batch runs its first one, with zero weight."""
        mine = self.share(indices)
        if mine or not every_rank_runs:
            return mine, True
        return list(indices[:1]), False

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over every rank."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_gradients(self, parameters) -> None:
        """Sum the gradients of ``parameters`` over every rank (a rank without examples in a
        batch adds zeros)."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)

    def broadcast(self, value):
        """Rank 0's ``value`` (any object pickle takes), on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank."""
        if self.world == 1:
            return flag
        return bool(self.sum([float(flag) if self.leader else 0.0])[0])

    def device(self, device: str) -> str:
        """This rank's device: its own GPU on a machine with several."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device

    def _device(self) -> str:
        import torch.distributed as dist

        return f"cuda:{self.local_rank}" if dist.get_backend() == "nccl" else "cpu"


SOLO = Group()


def join(device: str | None) -> Group:
    """The group torchrun started this process in (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``):
    joined with gloo on the CPU, NCCL on GPUs; one process alone needs no joining."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SOLO
    import torch
    import torch.distributed as dist

    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if gpu:
        torch.cuda.set_device(group.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return group


def leave() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
