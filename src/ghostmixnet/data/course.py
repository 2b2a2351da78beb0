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
    return images, _ids(ids, len(images), path)


def _ids(ids: Any, count: int, path: Path) -> list[int | str]:
    """The ``ids`` field as ``count`` distinct ints or strings (UTF-8 bytes decoded); else a :class:`DataError`
    naming the file, the field and what is wrong. Distinct: two rows with one id make a submission that no grader
    can read one way."""
    expected = f"'ids' must be a list of {count} distinct ints or strings, one per image"
    ids = ids.tolist() if isinstance(ids, np.ndarray) else ids
    if not isinstance(ids, list) or len(ids) != count:
        size = f"{len(ids)} ids" if isinstance(ids, list) else f"a {type(ids).__name__}"
        raise DataError(f"{path}: {expected}; it holds {size}")
    bad = next((i for i, v in enumerate(ids)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer, str, bytes))), None)
    if bad is not None:
        raise DataError(f"{path}: {expected}; id {bad} is {ids[bad]!r} ({type(ids[bad]).__name__})")
    try:
        ids = [v.decode() if isinstance(v, bytes) else int(v) if isinstance(v, np.integer) else v for v in ids]
    except UnicodeDecodeError:
        raise DataError(f"{path}: {expected}; one is bytes that are not UTF-8 text") from None
    seen: dict[str, int] = {}
    for i, v in enumerate(ids):
        if seen.setdefault(str(v), i) != i:
            raise DataError(f"{path}: {expected}; ids {seen[str(v)]} and {i} are both {v!r}")
    return ids


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
