"""A run's data from any of its sources: CIFAR-10, CIFAR-100 (fine or coarse labels), or a folder of class
sub-folders, as :class:`~ghostmixnet.data.splits.Splits` with their class names and a record of how they
were split.

CIFAR-10 goes through :func:`~ghostmixnet.data.splits.load_splits` exactly as before; CIFAR-100 is split the
same way (``val_size`` images held out of its training set). A folder is split by share (``holdout``), per
class in proportion to its images, because a user's classes are rarely balanced: either one folder from
which validation and test images are held out, or ``train/`` with ``val/`` and/or ``test/`` beside it (the
one missing held out of ``train/``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .cifar import ArraySet, cifar_files, find_cifar_folder
from .cifar100 import cifar100_files, find_cifar100, load_cifar100
from .folders import load_folder, scan_classes
from .splits import SUBSET_SEED, Splits, hold_out, load_splits, stratified_subset
from .stats import channel_stats

SPLIT_FOLDERS = ("train", "val", "test")
"""The sub-folders of a folder that comes already split (``train`` and at least one of the others)."""

MIN_HELD_PER_CLASS = 5
"""Images per class below which a split held out of a folder is warned about: its accuracy then moves by whole
points per image, and a class's figure is mostly chance."""

# Offsets from split_seed of a folder's held-out draws, so that no two share a stream nor the training subset's
# (splits.SUBSET_SEED, CIFAR-10's, so that a folder written from CIFAR-10 in class order keeps the same subset).
TEST_SEED, VAL_SEED = 2, 3

Progress = Callable[[str], Callable[[int, int], None] | None]
"""Given what is being read, a callback told (done, total) as a folder's images are decoded (or None)."""


def load_data(dataset: str, data_dir: Path, *, val_size: int, holdout: float, split_seed: int,
              image_size: int = 32, train_subset: int | None = None, download: bool = False, skip_bad: bool = False,
              echo: Callable[[str], None] | None = None, progress: Progress | None = None) -> Splits:
    """The training, selection and test data of ``dataset`` in ``data_dir``, with class names and a record; a
    folder's images at ``image_size`` pixels (CIFAR's are 32 whatever it says: a model of another size resizes
    them as it reads them, :func:`~ghostmixnet.infer.logits.predict_logits`)."""
    data_dir = Path(data_dir)
    if dataset == "cifar10":
        splits = load_splits(data_dir, val_size, split_seed, train_subset, download=download)
        splits.record = {"dataset": dataset, "val_size": val_size, "split_seed": split_seed}
        return splits
    if dataset in ("cifar100", "cifar100-coarse"):
        labels = "coarse" if dataset.endswith("coarse") else "fine"
        full, classes = load_cifar100(data_dir, train=True, labels=labels, download=download)
        test, _ = load_cifar100(data_dir, train=False, labels=labels)
        splits = hold_out(full, test, val_size, split_seed, train_subset)
        splits.classes, splits.record = classes, {"dataset": dataset, "val_size": val_size, "split_seed": split_seed}
        return splits
    if dataset == "folder":
        return _load_folder_splits(data_dir, holdout, split_seed, train_subset, skip_bad, echo, progress, image_size)
    raise ValueError(f"unknown dataset {dataset!r}")


def proportional_split(labels: np.ndarray, share: float, seed: int,
                       names: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out): from each class, ``share`` of its items (rounded, at least one) held out,
    seeded; both sorted. A class that would be left with no item to train on is refused, by name."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, round(share * len(idx)))
        if n >= len(idx):
            name = names[c] if c < len(names) else str(c)
            raise DataError(f"class {name!r} has {len(idx)} image(s), too few to hold any out and still train on it; "
                            "add images to it, or give val/ and test/ folders beside train/")
        held.append(rng.permutation(idx)[:n])
    held_out = np.sort(np.concatenate(held))
    mask = np.ones(len(labels), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def _load_folder_splits(root: Path, holdout: float, split_seed: int, train_subset: int | None, skip_bad: bool,
                        echo: Callable[[str], None] | None, progress: Progress | None, size: int = 32) -> Splits:
    parts = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}

    def read(folder: Path) -> tuple[ArraySet, tuple[str, ...]]:
        return load_folder(folder, skip_bad=skip_bad, echo=echo,
                           progress=progress(str(folder)) if progress is not None else None, size=size)

    # Split folders are train/ with val/ or test/ beside it; a lone train/ may be a class (of vehicles, say).
    if "train" not in parts or len(parts) == 1:  # one folder of classes: hold out test, then validation images
        full, classes = read(root)
        rest, test_idx = proportional_split(full.labels, holdout, split_seed + TEST_SEED, classes)
        train_idx, val_idx = proportional_split(full.labels[rest], holdout / (1 - holdout), split_seed + VAL_SEED,
                                                classes)
        train, val, test = full.subset(rest[train_idx]), full.subset(rest[val_idx]), full.subset(test_idx)
        layout = f"one folder: {100 * holdout:g}% of each class held out for validation and again for test"
        origin = {name: f"held out of {root.name}/, {100 * holdout:g}% of each class" for name in ("val", "test")}
    else:
        train, classes = read(parts["train"])
        given = {name: read(parts[name]) for name in ("val", "test") if name in parts}
        for name, (_, theirs) in given.items():
            if theirs != classes:
                raise DataError(f"{parts[name]} has the classes {_names(theirs)} but {parts['train']} has "
                                f"{_names(classes)}; the split folders must hold the same class folders")
        val, test = (given[name][0] if name in given else None for name in ("val", "test"))
        if test is None:
            rest, test_idx = proportional_split(train.labels, holdout, split_seed + TEST_SEED, classes)
            train, test = train.subset(rest), train.subset(test_idx)
        if val is None:  # a share of what test left, so that it is ``holdout`` of train/ as given
            share = holdout if "test" in parts else holdout / (1 - holdout)
            rest, val_idx = proportional_split(train.labels, share, split_seed + VAL_SEED, classes)
            train, val = train.subset(rest), train.subset(val_idx)
        layout = "split folders: " + ", ".join(
            f"{name}/" if name in parts else f"{name} held out of train/ ({100 * holdout:g}% of each class)"
            for name in SPLIT_FOLDERS)
        origin = {name: f"the {name}/ folder" if name in parts else
                  f"held out of train/, {100 * holdout:g}% of each class" for name in ("val", "test")}
    train = stratified_subset(train, train_subset, split_seed + SUBSET_SEED)
    for name, split in (("val", val), ("test", test)):
        if echo is not None and origin[name].startswith("held out"):
            _warn_if_small(name, split, classes, echo)
    record = {"dataset": "folder", "folder": str(root.resolve()), "layout": layout, "origin": origin,
              "image_size": size, "holdout": holdout, "split_seed": split_seed,
              "images": {"train": len(train), "val": len(val), "test": len(test)}}
    return Splits(train, val, test, val_is_test=False, classes=classes, record=record)


def _warn_if_small(name: str, split: ArraySet, classes: tuple[str, ...], echo: Callable[[str], None]) -> None:
    """Say in one line when a held-out split has fewer than :data:`MIN_HELD_PER_CLASS` images of some class."""
    counts = np.bincount(split.labels, minlength=len(classes))
    fewest = int(counts.argmin())
    if counts[fewest] < MIN_HELD_PER_CLASS:
        what = {"val": "validation", "test": "test"}[name]
        echo(f"warning: the {what} split held out of your images has {int(counts[fewest])} image(s) of "
             f"{classes[fewest]!r} and {len(split)} in all (fewer than {MIN_HELD_PER_CLASS} of a class): one image "
             f"moves its accuracy by {100 / len(split):.1f} points; for a figure worth reporting, add images or "
             f"give a {name}/ folder of your own beside a train/ folder")


def _names(classes: tuple[str, ...]) -> str:
    return name_list(classes, 6) + (f" ({len(classes)} in all)" if len(classes) > 6 else "")


def name_list(names: Sequence[str], first: int) -> str:
    """The ``first`` names, comma-separated, and ``...`` when there are more: a class list within one line."""
    return ", ".join(names[:first]) + (", ..." if len(names) > first else "")


def has_data(dataset: str, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds ``dataset`` at all (found, not yet read): what lets a command that can do
    without the data tell data that is absent from data that is there but unreadable."""
    try:
        if dataset == "cifar10":
            find_cifar_folder(data_dir)
        elif dataset == "folder":
            scan_classes(data_dir)
        else:
            find_cifar100(data_dir)
    except DataError:
        return False
    return True


def data_files(dataset: str, data_dir: Path) -> list[Path]:
    """The files reading ``dataset`` in ``data_dir`` reads, that exist (so that no output replaces one); a
    folder's images are not listed (no output of ghostmixnet is named like one)."""
    if dataset == "cifar10":
        return cifar_files(data_dir)
    return cifar100_files(data_dir) if dataset.startswith("cifar100") else []


def normalization_of(dataset: str, train: ArraySet,
                     normalize: str = "data") -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) a new model of ``dataset`` normalises with: None (CIFAR-10's constants) for CIFAR-10 or
    when ``normalize`` says ``cifar10``, else measured on its training split, to 4 decimals as CIFAR-10's are."""
    if dataset == "cifar10" or normalize == "cifar10":
        return None
    mean, std = channel_stats(train.images)
    return tuple(round(m, 4) for m in mean), tuple(max(round(s, 4), 1e-4) for s in std)


def check_classes(model_classes: tuple[str, ...], data_classes: tuple[str, ...], model: Any, data: Any) -> None:
    """Refuse to score a model on data whose classes are not its own, by name and order, in one line."""
    if tuple(model_classes) == tuple(data_classes):
        return
    if sorted(model_classes) == sorted(data_classes):
        raise DataError(f"{data} has {model}'s classes in another order; a folder's classes are its sub-folders in "
                        "sorted order, so the labels would not match")
    missing = [c for c in model_classes if c not in data_classes]
    extra = [c for c in data_classes if c not in model_classes]
    raise DataError(f"{model} classifies {_names(model_classes)} but {data} holds {_names(data_classes)}"
                    + (f" (missing from the data: {_names(tuple(missing))})" if missing else "")
                    + (f" (not the model's: {_names(tuple(extra))})" if extra else "")
                    + "; evaluate it on data of its own classes (--dataset, --data-dir)")
