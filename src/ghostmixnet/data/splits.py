"""A run's data: the seeded, stratified validation split carved from the training set, and the test set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .cifar import CLASSES, ArraySet, load_cifar10


def stratified_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with ``size`` held-out items spread evenly across classes, seeded.

    Classes get ``size // k`` each; the remainder goes one each to the first classes. Both index
    arrays come back sorted so the split does not depend on anything but labels, size and seed.
    """
    if size < 0 or size > len(labels):
        raise ValueError(f"cannot hold out {size} of {len(labels)} items")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), size // len(classes))
    per_class[: size % len(classes)] += 1
    held = []
    for c, n in zip(classes, per_class):
        idx = np.flatnonzero(labels == c)
        if n > len(idx):
            raise ValueError(f"cannot hold out {n} items of class {c}: it has only {len(idx)}")
        held.append(rng.permutation(idx)[:n])
    held_out = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


@dataclass
class Splits:
    """The data of one run: train, the selection split (validation, or test when val_size is 0), test; the
    names of its classes, and a record of where it came from and how it was split (for the run folder)."""

    train: ArraySet
    val: ArraySet
    test: ArraySet
    val_is_test: bool
    classes: tuple[str, ...] = CLASSES
    record: dict[str, Any] = field(default_factory=dict)


SUBSET_SEED = 1
"""The offset from ``split_seed`` of the training subset's draw (kept apart from the validation split's)."""


def load_splits(data_dir: Path, val_size: int, split_seed: int, train_subset: int | None = None,
                download: bool = False) -> Splits:
    """Read CIFAR-10 and carve the seeded, stratified validation split (and optional training subset)."""
    full = load_cifar10(data_dir, train=True, download=download)
    return hold_out(full, load_cifar10(data_dir, train=False), val_size, split_seed, train_subset)


def hold_out(full: ArraySet, test: ArraySet, val_size: int, split_seed: int,
             train_subset: int | None = None) -> Splits:
    """A dataset's splits from its training set ``full`` and its ``test`` set: ``val_size`` images of ``full``
    held out, stratified and seeded, to select on (0: the test set is selected on), and the training images
    reduced to a stratified subset of ``train_subset`` when it is given and smaller."""
    if val_size >= len(full):
        raise DataError(f"--val-size {val_size} leaves no training images (the training set has {len(full)})")
    train_idx, val_idx = stratified_split(full.labels, val_size, split_seed)
    train = stratified_subset(full.subset(train_idx), train_subset, split_seed + SUBSET_SEED)
    val = full.subset(val_idx) if val_size else test
    return Splits(train, val, test, val_is_test=val_size == 0)


def stratified_subset(data: ArraySet, size: int | None, seed: int) -> ArraySet:
    """``size`` images of ``data``, stratified and seeded; all of it when ``size`` is None or not smaller."""
    if size is None or size >= len(data):
        return data
    _, keep = stratified_split(data.labels, size, seed)
    return data.subset(keep)


def calibration_images(train: ArraySet, count: int, seed: int) -> np.ndarray:
    """Up to ``count`` training images, the same number from each class (drawn with ``seed``), to calibrate
    an int8 model's activation ranges on: never validation or test images, which score it."""
    _, pick = stratified_split(train.labels, min(count, len(train)), seed=seed)
    return train.images[pick]
