"""CIFAR-100 on disk: its official python layout (``cifar-100-python/`` with ``train``, ``test`` and ``meta``)
read into the uint8 arrays of the CIFAR-10 path, with its 100 fine labels or its 20 coarse ones, through
the restricted unpickler; and its download."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .cifar import ArraySet, download_archive, image_rows
from .pickles import get_entry, integer_labels, safe_unpickle

FOLDER = "cifar-100-python"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
FILES = ("train", "test", "meta")
LABELS = {"fine": 100, "coarse": 20}
"""The two label sets and their class counts."""


def cifar100_files(data_dir: Path) -> list[Path]:
    """The CIFAR-100 files in (or at) ``data_dir`` that exist: what reading it reads."""
    data_dir = Path(data_dir)
    return [c / n for c in (data_dir / FOLDER, data_dir) for n in FILES if (c / n).is_file()]


def find_cifar100(data_dir: Path, download: bool = False) -> Path:
    """The ``cifar-100-python`` folder in (or at) ``data_dir``, downloading it on request."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / FOLDER, data_dir):
        if all((candidate / n).is_file() for n in FILES):
            return candidate
    if download:
        return download_archive("CIFAR-100", URL, MD5, data_dir, FOLDER)
    raise DataError(f"CIFAR-100 not found: expected the official '{FOLDER}' folder (train, test, meta) in {data_dir}; "
                    "put it there, or name the folder that holds it with --data-dir (--download fetches it)")


def class_names(folder: Path, labels: str = "fine") -> tuple[str, ...]:
    """The class names of ``labels`` (fine or coarse) from the ``meta`` file, in label order."""
    meta = folder / "meta"
    names = get_entry(safe_unpickle(meta), f"{labels}_label_names", meta)
    named = isinstance(names, list) and all(isinstance(n, (bytes, str)) for n in names)
    if not named or len(names) != LABELS[labels]:
        raise DataError(f"{meta}: '{labels}_label_names' must be a list of {LABELS[labels]} names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_split(path: Path, labels: str = "fine") -> ArraySet:
    """The ``train`` or ``test`` file as (N, 32, 32, 3) uint8 images and (N,) int64 labels of ``labels``."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    d = safe_unpickle(path)
    images = image_rows(get_entry(d, "data", path), path)
    field = f"{labels}_labels"
    return ArraySet(images, integer_labels(get_entry(d, field, path), path, field, len(images), LABELS[labels]))


def load_cifar100(data_dir: Path, train: bool, labels: str = "fine",
                  download: bool = False) -> tuple[ArraySet, tuple[str, ...]]:
    """The 50,000 training or 10,000 test images of CIFAR-100 with ``labels`` (fine: 100 classes, coarse: 20)
    and their class names."""
    folder = find_cifar100(data_dir, download)
    return read_split(folder / ("train" if train else "test"), labels), class_names(folder, labels)
