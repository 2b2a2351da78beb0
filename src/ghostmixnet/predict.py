"""Prediction inputs: image files and folders, or the course's unlabeled test pickle.

Images of any size or mode are accepted: converted to RGB, centre-cropped to a square and resized
to 32x32 (bicubic), which is how a photo is brought to CIFAR-10's framing. Anything PIL cannot
decode is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .data import DataError, read_course_pickle

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
PICKLE_EXTENSIONS = {".pkl", ".pickle", ".p"}


@dataclass
class ImageInput:
    path: Path
    original_size: tuple[int, int]
    mode: str


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly, plus every image (by extension) under named folders, sorted."""
    paths: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"folder {p} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    return paths


def to_cifar_image(img: Image.Image) -> np.ndarray:
    """RGB, centre-cropped to a square, resized to 32x32: (32, 32, 3) uint8."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != 32:
        img = img.resize((32, 32), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def load_image(path: Path) -> tuple[np.ndarray, ImageInput]:
    """One image file as a CIFAR-sized array; undecodable files raise :class:`DataError`."""
    try:
        with Image.open(path) as img:
            img.load()
            info = ImageInput(path, img.size, img.mode)
            return to_cifar_image(img), info
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}; give PNG, JPEG or another format PIL decodes") from None


def is_pickle(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_EXTENSIONS


def iter_inputs(inputs: Sequence[Path], chunk: int = 256) -> Iterator[tuple[np.ndarray, list[ImageInput] | None]]:
    """The inputs as chunks of at most ``chunk`` (n, 32, 32, 3) uint8 images, decoded as they are needed,
    so that memory stays flat however many image files there are. Each chunk comes with its files'
    descriptions, or None for a course pickle (which is one array on disk and is read whole)."""
    if not inputs:
        raise DataError("no inputs given: name image files, folders, or one course test pickle")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
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
    paths = collect_images(inputs)  # paths only: cheap even for 50,000 files
    for i in range(0, len(paths), chunk):
        arrays, infos = [], []
        for path in paths[i:i + chunk]:
            array, info = load_image(path)
            arrays.append(array)
            infos.append(info)
        yield np.stack(arrays), infos
