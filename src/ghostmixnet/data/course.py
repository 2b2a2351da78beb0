"""The course's unlabeled test pickle: images (and, when it has them, their IDs) for a submission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .pickles import get_entry, safe_unpickle


def read_course_pickle(path: Path) -> np.ndarray:
    """The course's unlabeled test file: a pickled dict whose ``b'data'`` is uint8 (N, 32, 32, 3)."""
    return read_course_file(path)[0]


def read_course_file(path: Path) -> tuple[np.ndarray, list[Any] | None]:
    """The course's test file's images (:func:`read_course_pickle`) and its ``ids`` (one per image, ints or
    strings) when it has them, else None."""
    d = safe_unpickle(path)
    images = _course_images(get_entry(d, "data", path), path)
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
