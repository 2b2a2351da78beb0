"""CIFAR-10 on disk: safe reading into uint8 arrays, the validation split, and datasets.

Pickles from strangers can run code when unpickled, so every pickle here goes through
:class:`RestrictedUnpickler`, which admits only what a NumPy array needs to be rebuilt.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class DataError(Exception):
    """A data file or folder is missing, malformed or unsafe; the message says how to fix it."""


# What a pickled NumPy array (and the dicts and lists around it) may reference; nothing else loads.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # Protocol 5 (Python 3.8+'s highest, newer Pythons' default) rebuilds arrays from their raw bytes.
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # Protocol-2 pickles written by Python 3 encode bytes through this pure function.
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than array reconstruction."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside NumPy's array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load '{module}.{name}': not an array a data pickle should hold")


def safe_unpickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as e:
        raise DataError(f"{path} is not a safe data pickle ({e}); it was not loaded") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError,
            UnicodeDecodeError, OverflowError) as e:
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); replace the file") from None


def _get(d: Any, key: str, path: Path) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"{path} holds a {type(d).__name__}, not the dict of a CIFAR batch")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path} has no '{key}' entry; is it a CIFAR-10 batch?")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 batch file as (N, 32, 32, 3) uint8 images and (N,) int64 labels."""
    d = safe_unpickle(path)
    images, labels = _get(d, "data", path), _get(d, "labels", path)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(images):
        raise DataError(f"{path}: 'labels' must be a list of {len(images)} ints")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must hold ints") from None
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels must be in 0..{len(CLASSES) - 1}, found {labels.min()}..{labels.max()}")
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def find_cifar_folder(data_dir: Path, download: bool = False) -> Path:
    """The ``cifar-10-batches-py`` folder in (or at) ``data_dir``, downloading it on request."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / CIFAR_FOLDER, data_dir):
        if (candidate / TEST_FILE).is_file():
            return candidate
    if download:
        return download_cifar10(data_dir)
    raise DataError(
        f"CIFAR-10 not found: expected the official '{CIFAR_FOLDER}' folder (data_batch_1..5, test_batch) "
        f"in {data_dir}; put it there, or name the folder that holds it with --data-dir "
        "(`ghostmixnet train --download` fetches it)"
    )


def download_cifar10(data_dir: Path) -> Path:
    """Fetch and unpack the official archive into ``data_dir`` (its MD5 checked by torchvision)."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(CIFAR_URL, download_root=str(data_dir), md5=CIFAR_MD5)
    except Exception as e:  # any network or archive failure: say what to do instead
        raise DataError(
            f"could not download CIFAR-10 from {CIFAR_URL} ({type(e).__name__}: {e}); without a network, "
            f"unpack cifar-10-python.tar.gz so that {Path(data_dir) / CIFAR_FOLDER} exists"
        ) from None
    return Path(data_dir) / CIFAR_FOLDER


@dataclass
class ArraySet:
    """Images as (N, 32, 32, 3) uint8 and labels as (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ArraySet:
        return ArraySet(self.images[index], self.labels[index])


def load_cifar10(data_dir: Path, train: bool, download: bool = False) -> ArraySet:
    """The 50,000 training or 10,000 test images of CIFAR-10, read once into memory."""
    folder = find_cifar_folder(data_dir, download)
    names = TRAIN_FILES if train else (TEST_FILE,)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}; the folder must hold all six official batch files")
    parts = [read_batch(folder / n) for n in names]
    return ArraySet(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


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
    """The data of one run: train, the selection split (validation, or test when val_size is 0), test."""

    train: ArraySet
    val: ArraySet
    test: ArraySet
    val_is_test: bool


def load_splits(data_dir: Path, val_size: int, split_seed: int, train_subset: int | None = None,
                download: bool = False) -> Splits:
    """Read CIFAR-10 and carve the seeded, stratified validation split (and optional training subset)."""
    full = load_cifar10(data_dir, train=True, download=download)
    test = load_cifar10(data_dir, train=False)
    if val_size >= len(full):
        raise DataError(f"--val-size {val_size} leaves no training images (the training set has {len(full)})")
    train_idx, val_idx = stratified_split(full.labels, val_size, split_seed)
    train = full.subset(train_idx)
    if train_subset is not None and train_subset < len(train):
        _, keep = stratified_split(train.labels, train_subset, split_seed + 1)
        train = train.subset(keep)
    val = full.subset(val_idx) if val_size else test
    return Splits(train, val, test, val_is_test=val_size == 0)


# What a seed is for, given first to mix_seed, so that uses never share a stream. Without it the seed of
# image i's augmentation, (run seed, epoch, i), equalled that of step i's dropout and mixing on rank 0,
# (run seed, epoch, i, 0): NumPy's SeedSequence pads its entropy with zeros, so trailing zeros vanish.
SEED_IMAGE_AUGMENT = 1
"""Per-image augmentation of the ``torchvision`` backend: (run seed, epoch, image index)."""
SEED_STEP = 2
"""Dropout and batch mixing of a step: (run seed, epoch, step, rank)."""
SEED_BATCH_AUGMENT = 3
"""The ``batched`` backend's augmentation draws for a step's batch: (run seed, epoch, step, rank)."""


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
        order = torch.tensor([index for index, _ in self.sampler], dtype=torch.long).to(self.device)  # once an epoch
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            yield self.images[rows], self.labels[rows]


def read_course_pickle(path: Path) -> np.ndarray:
    """The course's unlabeled test file: a pickled dict whose ``b'data'`` is uint8 (N, 32, 32, 3)."""
    return read_course_file(path)[0]


def read_course_file(path: Path) -> tuple[np.ndarray, list[Any] | None]:
    """The course's test file's images (:func:`read_course_pickle`) and its ``ids`` (one per image, ints or
    strings) when it has them, else None."""
    d = safe_unpickle(path)
    images = _course_images(_get(d, "data", path), path)
    ids = next((d[k] for k in (b"ids", "ids") if k in d), None)
    if ids is None:
        return images, None
    ids = list(ids.tolist() if isinstance(ids, np.ndarray) else ids) if isinstance(ids, (list, np.ndarray)) else None
    if ids is None or len(ids) != len(images) or not all(isinstance(i, (int, str, bytes)) for i in ids):
        raise DataError(f"{path}: 'ids' must be a list of one int or string per image ({len(images)})")
    return images, [i.decode() if isinstance(i, bytes) else i for i in ids]


def _course_images(images: Any, path: Path) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be a uint8 array, got {getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim == 2 and images.shape[1] == 3072:  # the official batch layout, accepted too
        images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: 'data' must have shape (N, 32, 32, 3), got {images.shape}")
    if not len(images):
        raise DataError(f"{path}: 'data' holds no images")
    return np.ascontiguousarray(images)
