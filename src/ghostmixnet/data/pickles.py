"""Pickles from strangers, read safely: only what a NumPy array (and the dicts and lists around it) needs
is admitted, so a dataset or test file cannot run code when it is read."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..files import read_regular

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
    data = read_regular(path, "data file")
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as e:
        raise DataError(f"{path} is not a safe data pickle ({e}); it was not loaded") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError,
            UnicodeDecodeError, OverflowError) as e:
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); replace the file") from None


def get_entry(d: Any, key: str, path: Path) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"{path} holds a {type(d).__name__}, not the dict of a CIFAR batch")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path} has no '{key}' entry; is it a CIFAR batch?")


def integer_labels(values: Any, path: Path, field: str, count: int, classes: int) -> np.ndarray:
    """``values`` as (count,) int64 labels in ``0..classes-1``; else a :class:`DataError` naming the file, the field
    and what was expected. Integers only: NumPy would turn 3.7 into 3, True into 1 and "3" into 3 without a word."""
    expected = f"a list of {count} integer labels in 0..{classes - 1}"
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise DataError(f"{path}: field {field!r} must be {expected}, got an array of {values.dtype} with shape "
                            f"{values.shape}")
        labels = values.astype(np.int64)
    elif isinstance(values, (list, tuple)):
        bad = next((i for i, v in enumerate(values)
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer))), None)
        if bad is not None:
            raise DataError(f"{path}: field {field!r} must be {expected}; item {bad} is {values[bad]!r} "
                            f"({type(values[bad]).__name__})")
        try:
            labels = np.asarray(values, dtype=np.int64)
        except OverflowError:
            raise DataError(f"{path}: field {field!r} must be {expected}; it holds an integer out of range") from None
    else:
        raise DataError(f"{path}: field {field!r} must be {expected}, got a {type(values).__name__}")
    if len(labels) != count:
        raise DataError(f"{path}: field {field!r} holds {len(labels)} labels for {count} images; one per image")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: field {field!r} must be {expected}; found {labels.min()}..{labels.max()}")
    return labels
