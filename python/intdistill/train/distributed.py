"""More than one process: ``torch.distributed`` as ``torchrun`` sets it up.

``torchrun --nproc_per_node N -m intdistill train-ranker ...`` (or ``train-retriever``) starts N processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in the environment; :func:`setup` joins them into a
process group (gloo on CPU, nccl on CUDA, each process on ``cuda:LOCAL_RANK``). Without those variables (or
with ``WORLD_SIZE=1``) everything runs in one process, unchanged.

What is split and what is not (:func:`intdistill.train.loop.train` and the stages use these helpers):

- Each optimizer step's queries (the same seeded per-epoch order on every rank) are cut into ``world``
  near-equal contiguous parts, one per rank (:func:`shard`); each rank's loss is weighted by its share, so
  ``DistributedDataParallel``'s gradient average is exactly the gradient of the step's mean loss, as one
  process with the same global batch computes it. (torch's ``DistributedSampler`` pads the last batch by
  repeating queries; this does not.)
- Stage 2's corpus encoding and teacher scoring are cut by rank and gathered (:func:`gather_rows`,
  :func:`gather_objects`), not repeated on every rank.
- Rank 0 alone writes checkpoints, metrics and the final model (:attr:`Dist.main`); the others wait.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Dist:
    """This process's place: ``rank`` of ``world`` (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group ``torchrun`` describes (once per process) and pick this rank's device: the
    backend follows the device (nccl for CUDA, gloo otherwise). Returns ``(Dist, device)``."""
    world = env_world()
    if world <= 1:
        return Dist(), device
    dist = torch.distributed
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def current() -> Dist:
    """The process group already joined (by :func:`setup`), else a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()


def shard(items: Sequence, dist: Dist) -> Sequence:
    """This rank's contiguous part of ``items``: ``world`` near-equal parts, the first ones one longer."""
    if not dist.active:
        return items
    n, w = len(items), dist.world
    start = dist.rank * (n // w) + min(dist.rank, n % w)
    return items[start : start + n // w + (1 if dist.rank < n % w else 0)]


def gather_rows(part: np.ndarray, dist: Dist) -> np.ndarray:
    """Concatenate every rank's ``part`` (rows in rank order; the parts of :func:`shard`), on every rank."""
    if not dist.active:
        return part
    parts: list[Any] = [None] * dist.world
    torch.distributed.all_gather_object(parts, part)
    return np.concatenate(parts, axis=0)


def gather_objects(part: list, dist: Dist) -> list:
    """Concatenate every rank's list, in rank order, on every rank."""
    if not dist.active:
        return part
    parts: list[Any] = [None] * dist.world
    torch.distributed.all_gather_object(parts, part)
    return [x for p in parts for x in p]


def all_sum(values: Sequence[float], dist: Dist) -> list[float]:
    """Element-wise sum over the ranks (float64), on every rank."""
    if not dist.active:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def broadcast(obj: Any, dist: Dist) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dist.active:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
