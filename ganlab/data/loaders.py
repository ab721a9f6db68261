"""What the Lightning trainer iterates over: one item per training iteration.

Synthetic targets (1D, 2D) are sampled inside the training step, so an item is just the iteration
number. Image datasets are finite: a real DataLoader hands each iteration its ``d_steps`` real
batches, taken in order from a stream of shuffled epochs. Epoch e's order depends only on (seed, e),
so a run resumed at iteration i gets exactly the batches the uninterrupted run would have had.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from ganlab.data.image_datasets import ImageDataset


class EpochStreamSampler(Sampler[list[int]]):
    """Index lists of ``per_iteration`` samples for iterations ``first`` .. ``iterations - 1``, cut
    from consecutive shuffled epochs (an iteration may straddle two epochs; every sample is seen once
    per epoch)."""

    def __init__(self, size: int, per_iteration: int, first: int, iterations: int, seed: int) -> None:
        self.size, self.per_iteration = size, per_iteration
        self.first, self.iterations, self.seed = first, iterations, seed

    def _epoch(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=gen)

    def __len__(self) -> int:
        return max(self.iterations - self.first, 0)

    def __iter__(self) -> Iterator[list[int]]:
        position = self.first * self.per_iteration
        epoch, offset = divmod(position, self.size)
        order = self._epoch(epoch)
        for _ in range(len(self)):
            chunk: list[torch.Tensor] = []
            need = self.per_iteration
            while need:
                take = order[offset:offset + need]
                chunk.append(take)
                need -= len(take)
                offset += len(take)
                if offset == self.size:
                    epoch, offset = epoch + 1, 0
                    order = self._epoch(epoch)
            yield torch.cat(chunk).tolist()


class _Rows(TensorDataset):
    """A TensorDataset indexed by a whole list of rows at once (one gather per iteration)."""

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(rows)
        return tuple(t[index] for t in self.tensors)


def training_loader(target, train_cfg, first: int) -> DataLoader:
    """Items for iterations ``first`` .. ``train_cfg.iterations - 1`` (see the module docstring)."""
    if not isinstance(target, ImageDataset):
        return DataLoader(range(first, train_cfg.iterations), batch_size=None)
    per_iteration = train_cfg.d_steps * train_cfg.batch_size
    sampler = EpochStreamSampler(len(target.train), per_iteration, first, train_cfg.iterations, train_cfg.seed)
    return DataLoader(_Rows(target.train, target.train_labels), sampler=sampler, batch_size=None)
