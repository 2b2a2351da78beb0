"""What ``predict`` is given: image files and folders, or one course test pickle, read a chunk at a time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..checks import count
from ..data.images import IMAGE_EXTENSIONS, MAX_PIXELS, ImageInput, load_image
from ..errors import DataError
from ..files import entry_problem

PICKLE_EXTENSIONS = {".pkl", ".pickle", ".p"}


def collect_images(inputs: Sequence[Path], echo: Callable[[str], None] | None = None) -> list[Path]:
    """Image files named directly, plus every image (by extension) under named folders, sorted. Folders
    reached through a symbolic link are not followed (a link can loop) and are reported to ``echo``."""
    paths: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = []
            for folder, subfolders, files in os.walk(p):
                for name in sorted(subfolders):
                    if (Path(folder) / name).is_symlink() and echo is not None:
                        echo(f"skipped {Path(folder) / name}: a linked folder is not followed (name it to include it)")
                found += [Path(folder) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
            if not found:
                raise DataError(f"folder {p} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths += sorted(found)
        elif p.is_file():
            paths.append(p)
        else:  # missing, or an entry that is no file (a FIFO would block a reader): say which
            raise DataError(f"input {p} {entry_problem(p)}")
    return paths


def is_pickle(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_EXTENSIONS


def decode_images(paths: Sequence[Path], chunk: int = 256, skip_bad: bool = False,
                  echo: Callable[[str], None] | None = None,
                  max_pixels: int = MAX_PIXELS, size: int = 32) -> Iterator[tuple[np.ndarray, list[ImageInput]]]:
    """Image files (:func:`collect_images`) as chunks of at most ``chunk`` (n, size, size, 3) uint8 images,
    decoded as they are needed, so that memory stays flat however many files there are, each chunk with its
    files' descriptions. With ``skip_bad`` a file that cannot be decoded is reported (to ``echo``, and as an
    :class:`ImageInput` whose ``error`` says why, with no image) instead of stopping everything; an image of
    more than ``max_pixels`` is such a file."""
    chunk = count(chunk, "chunk")
    for i in range(0, len(paths), chunk):
        arrays, infos = [], []
        for path in paths[i:i + chunk]:
            try:
                array, info = load_image(path, max_pixels, size)
            except DataError as e:
                if not skip_bad:
                    raise DataError(f"{e} (or pass --skip-bad to skip such files and go on)") from None
                if echo is not None:
                    echo(f"skipped {path}: {e}")
                infos.append(ImageInput(path, (0, 0), "", error=str(e)))
                continue
            arrays.append(array)
            infos.append(info)
        yield (np.stack(arrays) if arrays else np.empty((0, size, size, 3), np.uint8)), infos
