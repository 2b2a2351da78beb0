"""CIFAR-10 on disk: its constants, its official batch files read into uint8 arrays, and its download."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import require_regular
from .pickles import get_entry, integer_labels, safe_unpickle

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 batch file as (N, 32, 32, 3) uint8 images and (N,) int64 labels."""
    d = safe_unpickle(path)
    images = image_rows(get_entry(d, "data", path), path)
    return images, integer_labels(get_entry(d, "labels", path), path, "labels", len(images), len(CLASSES))


def image_rows(rows: object, path: Path) -> np.ndarray:
    """A batch file's ``data`` entry, (N, 3072) uint8 rows of red, green and blue planes, as (N, 32, 32, 3)
    images; a :class:`DataError` naming the file when it is anything else (CIFAR-10's and CIFAR-100's files
    share the format)."""
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                        f"{getattr(rows, 'dtype', type(rows).__name__)} {getattr(rows, 'shape', '')}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def cifar_files(data_dir: Path) -> list[Path]:
    """The CIFAR-10 batch files in (or at) ``data_dir`` that exist: what reading it reads (so that no output
    replaces one)."""
    data_dir = Path(data_dir)
    return [c / n for c in (data_dir / CIFAR_FOLDER, data_dir) for n in (*TRAIN_FILES, TEST_FILE) if (c / n).is_file()]


def find_cifar_folder(data_dir: Path, download: bool = False) -> Path:
    """The ``cifar-10-batches-py`` folder in (or at) ``data_dir``, downloading it on request."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / CIFAR_FOLDER, data_dir):
        if (candidate / TEST_FILE).is_file():
            return candidate
        if os.path.lexists(candidate / TEST_FILE):  # there, but no file: a FIFO, a folder, a dangling link...
            require_regular(candidate / TEST_FILE, "data file")
    if download:
        return download_cifar10(data_dir)
    raise DataError(
        f"CIFAR-10 not found: expected the official '{CIFAR_FOLDER}' folder (data_batch_1..5, test_batch) "
        f"in {data_dir}; put it there, or name the folder that holds it with --data-dir "
        "(`ghostmixnet train --download` fetches it)"
    )


def download_cifar10(data_dir: Path) -> Path:
    """Fetch and unpack the official archive into ``data_dir`` (its MD5 checked by torchvision)."""
    return download_archive("CIFAR-10", CIFAR_URL, CIFAR_MD5, Path(data_dir), CIFAR_FOLDER)


def download_archive(name: str, url: str, md5: str, data_dir: Path, folder: str) -> Path:
    """Fetch the official archive of dataset ``name`` from ``url`` and unpack it into ``data_dir`` (its MD5
    checked by torchvision), where it makes ``folder``; a :class:`DataError` saying what to do offline."""
    # Imported here: torchvision costs every command about a second to import, and only a download needs it.
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, download_root=str(data_dir), md5=md5)
    except Exception as e:  # any network or archive failure: say what to do instead
        raise DataError(f"could not download {name} from {url} ({type(e).__name__}: {e}); without a network, "
                        f"unpack {url.rsplit('/', 1)[-1]} so that {data_dir / folder} exists") from None
    return data_dir / folder


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
