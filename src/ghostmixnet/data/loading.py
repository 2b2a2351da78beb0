"""Serving training batches: seeds that make every random draw a function of the run's position, the
resumable sampler, the per-image dataset of the ``torchvision`` backend and batches held on the device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .cifar import ArraySet

# What a seed is for, given first to mix_seed, so that uses never share a stream. Without it the seed of
# image i's augmentation, (run seed, epoch, i), equalled that of step i's dropout and mixing on rank 0,
# (run seed, epoch, i, 0): NumPy's SeedSequence pads its entropy with zeros, so trailing zeros vanish.
SEED_IMAGE_AUGMENT = 1
"""Per-image augmentation of the ``torchvision`` backend: (run seed, epoch, image index)."""
SEED_STEP = 2
"""Dropout and batch mixing of a step: (run seed, epoch, step, rank)."""
SEED_BATCH_AUGMENT = 3
"""The ``batched`` backend's augmentation draws for a step's batch: (run seed, epoch, step, rank)."""
SEED_DISTILL_VIEW = 4
"""Distillation's fixed views of every training image: (split seed, view)."""


def mix_seed(domain: int, *values: int) -> int:
    """A well-mixed 63-bit seed for the use ``domain`` (one of the ``SEED_*`` tags) from integers (run seed,
    epoch, step, index, ...)."""
    words = [domain, *values]
    return int(np.random.SeedSequence([v & 0xFFFFFFFFFFFFFFFF for v in words]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


class ImageDataset(torch.utils.data.Dataset):
    """Serves (transformed PIL image, label) pairs from an :class:`ArraySet`.

    An item may be asked for as ``(index, seed)``: the augmentation then draws from a generator seeded
    with ``seed``, so an image's augmentation depends on the run, the epoch and the image alone, not
    on which worker process serves it or on what that worker served before. That is what lets a run
    resume in the middle of an epoch and still see exactly the images it would have seen.
    """

    def __init__(self, data: ArraySet, transform: Callable[[Image.Image], torch.Tensor] | None) -> None:
        self.data = data
        self.transform = transform  # None serves the raw (3, 32, 32) uint8 image, for batched augmentation

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        if self.transform is None:
            return torch.from_numpy(self.data.images[i]).permute(2, 0, 1), int(self.data.labels[i])
        if seed is not None:
            torch.manual_seed(seed)  # torchvision's transforms draw from torch's global generator
        return self.transform(Image.fromarray(self.data.images[i])), int(self.data.labels[i])


class ResumableSampler(torch.utils.data.DistributedSampler):
    """PyTorch's distributed sampler (a permutation per epoch from ``seed + epoch``, padded and dealt
    out by rank) that can start part-way through an epoch and tags each index with its augmentation
    seed. With one process it is a plain seeded shuffle."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Shuffle for ``epoch`` and skip this process's first ``start`` samples of it."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())[self.start:]
        return iter([(i, mix_seed(SEED_IMAGE_AUGMENT, self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class DeviceBatches:
    """Training batches served from the whole uint8 training set held on the training device.

    For batched augmentation, which wants raw uint8 batches where the model runs: the images are moved
    once (150 MB for CIFAR-10), and each batch is one gather on the device instead of a DataLoader
    collating arrays on the host and copying them over at every step. Batches come in the order of
    ``sampler`` (set its epoch first), ``batch_size`` at a time, the last one partial: the same
    batches as a DataLoader over an :class:`ImageDataset` without a transform.
    """

    def __init__(self, data: ArraySet, sampler: ResumableSampler, batch_size: int, device: torch.device) -> None:
        self.images = torch.from_numpy(data.images).to(device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(data.labels).to(device)
        self.sampler, self.batch_size, self.device = sampler, batch_size, device

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, images, labels in self.with_rows():
            yield images, labels

    def with_rows(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The same batches as (the images' rows in the training set, images, labels)."""
        order = torch.tensor([index for index, _ in self.sampler], dtype=torch.long).to(self.device)  # once an epoch
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            yield rows, self.images[rows], self.labels[rows]
