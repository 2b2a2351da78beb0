"""What ``predict`` is given: image files and folders, or one course test pickle, read a chunk at a time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..checks import count
from ..data.course import read_course_pickle
from ..data.images import MAX_PIXELS, ImageInput, load_image
from ..errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
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
        else:
            raise DataError(f"input {p} does not exist")
    return paths


def is_pickle(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_EXTENSIONS


def iter_inputs(inputs: Sequence[Path], chunk: int = 256, skip_bad: bool = False,
                echo: Callable[[str], None] | None = None,
                max_pixels: int = MAX_PIXELS) -> Iterator[tuple[np.ndarray, list[ImageInput] | None]]:
    """The inputs as chunks of at most ``chunk`` (n, 32, 32, 3) uint8 images, decoded as they are needed,
    so that memory stays flat however many image files there are. Each chunk comes with its files'
    descriptions, or None for a course pickle (which is one array on disk and is read whole). With
    ``skip_bad`` a file that cannot be decoded is reported (to ``echo``, and as an :class:`ImageInput` whose
    ``error`` says why, with no image) instead of stopping everything; an image of more than ``max_pixels``
    is such a file."""
    if not inputs:
        raise DataError("no inputs given: name image files, folders, or one course test pickle")
    chunk = count(chunk, "chunk")
    pickles = [p for p in inputs if is_pickle(p)]
    if pickles:
        if len(inputs) != 1:
            raise DataError("give either image files and folders, or a single course test pickle, not both")
        if not Path(pickles[0]).is_file():
            raise DataError(f"input {pickles[0]} does not exist")
        images = read_course_pickle(Path(pickles[0]))
        for i in range(0, len(images), chunk):
            yield images[i:i + chunk], None
        return
    paths = collect_images(inputs, echo)  # paths only: cheap even for 50,000 files
    for i in range(0, len(paths), chunk):
        arrays, infos = [], []
        for path in paths[i:i + chunk]:
            try:
                array, info = load_image(path, max_pixels)
            except DataError as e:
                if not skip_bad:
                    raise DataError(f"{e} (or pass --skip-bad to skip such files and go on)") from None
                if echo is not None:
                    echo(f"skipped {path}: {e}")
                infos.append(ImageInput(path, (0, 0), "", error=str(e)))
                continue
            arrays.append(array)
            infos.append(info)
        yield (np.stack(arrays) if arrays else np.empty((0, 32, 32, 3), np.uint8)), infos
