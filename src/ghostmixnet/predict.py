"""Prediction: image files and folders, or the course's unlabeled test pickle, into labels and a CSV.

Images of any size or mode are accepted: converted to RGB, centre-cropped to a square and resized
to 32x32 (bicubic), which is how a photo is brought to CIFAR-10's framing. Anything PIL cannot
decode is an error naming the file.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .data import CLASSES, DataError, read_course_pickle
from .engine import predict_logits
from .files import atomic_open, check_output

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


def predict_inputs(model: Any, inputs: Sequence[Path], device: torch.device, out: Path | None = None,
                   batch_size: int = 256, tta: bool = False, echo: Callable[[str], None] = print) -> int:
    """Classify ``inputs`` with ``model`` (a module on ``device``, or an ONNX classifier), a chunk at a time.

    Images: a line each (file, label, probability, original size and mode), and ``out`` as a CSV
    (file,label,probability) if given. The course pickle: a submission CSV (ID,Labels; ``out`` or
    ``submission.csv``) and the predicted class counts. CSV rows are written as they come, to a
    temporary file renamed over ``out`` at the end. Returns the number of inputs classified.
    """
    if out is not None:
        check_output(out, inputs)
    chunks = iter_inputs(inputs, chunk=batch_size)
    first = next(chunks)
    submission = first[1] is None
    out = out or (Path("submission.csv") if submission else None)
    counts, done = torch.zeros(len(CLASSES), dtype=torch.long), 0
    with atomic_open(out, newline="") if out is not None else _no_file() as handle:
        writer = csv.writer(handle, lineterminator="\n") if handle else None
        if writer:
            writer.writerow(["ID", "Labels"] if submission else ["file", "label", "probability"])
        if not submission:
            echo(f"{'file':<40}  {'label':<10} {'prob':>6}  input")
        for images, infos in itertools.chain([first], chunks):
            probs = predict_logits(model, images, device, batch_size=batch_size, tta=tta).softmax(1)
            conf, labels = probs.max(1)
            counts += torch.bincount(labels, minlength=len(CLASSES))[: len(CLASSES)]
            if submission:
                writer.writerows((done + i, int(label)) for i, label in enumerate(labels))
            else:
                _report_images(infos, labels, conf, writer, echo)
            done += len(labels)
    if submission:
        summary = {CLASSES[i]: int(c) for i, c in enumerate(counts)}
        echo(f"wrote {out}: {done} rows (ID,Labels); predicted counts: {summary}")
    elif out:
        echo(f"wrote {out}")
    return done


def _report_images(infos: list[ImageInput], labels: torch.Tensor, conf: torch.Tensor, writer: Any,
                   echo: Callable[[str], None]) -> None:
    for info, lab, p in zip(infos, labels, conf):
        name = CLASSES[int(lab)] if int(lab) < len(CLASSES) else str(int(lab))
        echo(f"{str(info.path):<40}  {name:<10} {float(p):6.3f}  "
             f"{info.original_size[0]}x{info.original_size[1]} {info.mode}")
        if writer:
            writer.writerow([str(info.path), name, f"{float(p):.6f}"])


@contextmanager
def _no_file() -> Iterator[None]:
    yield None
