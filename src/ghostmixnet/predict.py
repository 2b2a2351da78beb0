"""Prediction: image files and folders, or the course's unlabeled test pickle, into labels and a CSV.

Images of any size or mode are accepted: converted to RGB, centre-cropped to a square and resized
to 32x32 (bicubic), which is how a photo is brought to CIFAR-10's framing. Anything PIL cannot
decode is an error naming the file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import CLASSES, DataError, read_course_file, read_course_pickle
from .engine import predict_logits
from .files import atomic_open, check_output

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
PICKLE_EXTENSIONS = {".pkl", ".pickle", ".p"}


@dataclass
class ImageInput:
    """One input file: its path, displayed size and mode, or why it could not be read."""

    path: Path
    original_size: tuple[int, int]
    mode: str
    error: str = ""


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


def to_8bit(img: Image.Image, path: Path | str = "image") -> Image.Image:
    """An 8-bit image of a 16-bit or float one, scaled by its mode's range: 16-bit by 65535 -> 255, 32-bit
    integers likewise when they fit 16 bits, floats from [0, 1] (or already in [0, 255]). PIL's own
    conversion clips instead (a full-range 16-bit image turns white, a [0, 1] float one black)."""
    if img.mode.startswith("I;16"):
        pixels = np.asarray(img, dtype=np.float64) / 257.0
    elif img.mode == "I":
        pixels = np.asarray(img, dtype=np.float64)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise DataError(f"{path}: 32-bit integer pixels outside 0..65535; save it as an 8- or 16-bit image")
        pixels = pixels / 257.0
    elif img.mode == "F":
        pixels = np.asarray(img, dtype=np.float64)
        if not np.isfinite(pixels).all() or (pixels.size and (pixels.min() < 0 or pixels.max() > 255)):
            raise DataError(f"{path}: float pixels outside [0, 1] and [0, 255] (or not finite); their range is "
                            "unknown: save it as an 8- or 16-bit image")
        pixels = pixels * 255.0 if pixels.size and pixels.max() <= 1.0 else pixels
    else:
        return img
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")


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
    """One image file as a CIFAR-sized array, turned as its EXIF orientation says (the size reported is the
    displayed one) and scaled from 16-bit or float pixels; undecodable files raise :class:`DataError`."""
    try:
        with Image.open(path) as img:
            img.load()
            shown = ImageOps.exif_transpose(img)  # phones store pictures sideways with an orientation tag
            info = ImageInput(path, shown.size, img.mode)
            return to_cifar_image(to_8bit(shown, path)), info
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}; give PNG, JPEG or another format PIL decodes") from None


def is_pickle(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_EXTENSIONS


def iter_inputs(inputs: Sequence[Path], chunk: int = 256, skip_bad: bool = False,
                echo: Callable[[str], None] | None = None) -> Iterator[tuple[np.ndarray, list[ImageInput] | None]]:
    """The inputs as chunks of at most ``chunk`` (n, 32, 32, 3) uint8 images, decoded as they are needed,
    so that memory stays flat however many image files there are. Each chunk comes with its files'
    descriptions, or None for a course pickle (which is one array on disk and is read whole). With
    ``skip_bad`` a file that cannot be decoded is reported (to ``echo``, and as an :class:`ImageInput` whose
    ``error`` says why, with no image) instead of stopping everything."""
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
    paths = collect_images(inputs, echo)  # paths only: cheap even for 50,000 files
    for i in range(0, len(paths), chunk):
        arrays, infos = [], []
        for path in paths[i:i + chunk]:
            try:
                array, info = load_image(path)
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


def predict_inputs(model: Any, inputs: Sequence[Path], device: torch.device, out: Path | None = None,
                   batch_size: int = 256, tta: bool = False, skip_bad: bool = False,
                   echo: Callable[[str], None] = print, tta_shift: int = 0) -> int:
    """Classify ``inputs`` with ``model`` (a module on ``device``, or an ONNX classifier), a chunk at a time.

    Images: a line each (file, label, probability, displayed size and mode), and ``out`` as a CSV
    (file,label,probability; with ``skip_bad`` also error, which names each file that could not be read).
    The course pickle: a submission CSV (ID,Labels: the pickle's own ``ids`` when it has them, else the row
    index; ``out`` or ``submission.csv``) and the predicted class counts. CSV rows are written as they come,
    to a temporary file renamed over ``out`` at the end. Returns the number of inputs classified.
    """
    if out is not None:
        check_output(out, inputs)
    if len(inputs) == 1 and is_pickle(inputs[0]):
        return _predict_course(model, Path(inputs[0]), device, out or Path("submission.csv"), batch_size, tta,
                               tta_shift, echo)
    done = 0
    with atomic_open(out, newline="") if out is not None else nullcontext() as handle:
        writer = csv.writer(handle, lineterminator="\n") if handle else None
        if writer:
            writer.writerow(["file", "label", "probability"] + (["error"] if skip_bad else []))
        echo(f"{'file':<40}  {'label':<10} {'prob':>6}  input")
        for images, infos in iter_inputs(inputs, chunk=batch_size, skip_bad=skip_bad, echo=echo):
            probs = (predict_logits(model, images, device, batch_size, tta, tta_shift).softmax(1) if len(images)
                     else torch.empty(0, len(CLASSES)))
            conf, labels = probs.max(1) if len(images) else (torch.empty(0), torch.empty(0, dtype=torch.long))
            _report_images(infos, labels, conf, writer, echo, skip_bad)
            done += len(labels)
    if out:
        echo(f"wrote {out}")
    return done


def _predict_course(model: Any, path: Path, device: torch.device, out: Path, batch_size: int, tta: bool,
                    tta_shift: int, echo: Callable[[str], None]) -> int:
    images, ids = read_course_file(path)
    echo(f"{path}: {len(images)} images; IDs " + ("from its 'ids' entry" if ids is not None else "are row indices"))
    ids = ids if ids is not None else list(range(len(images)))
    counts = torch.zeros(len(CLASSES), dtype=torch.long)
    with atomic_open(out, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ID", "Labels"])
        for start in range(0, len(images), batch_size):
            labels = predict_logits(model, images[start:start + batch_size], device, batch_size, tta,
                                    tta_shift).argmax(1)
            counts += torch.bincount(labels, minlength=len(CLASSES))[: len(CLASSES)]
            writer.writerows((ids[start + i], int(label)) for i, label in enumerate(labels))
    summary = {CLASSES[i]: int(c) for i, c in enumerate(counts)}
    echo(f"wrote {out}: {len(images)} rows (ID,Labels); predicted counts: {summary}")
    return len(images)


def _report_images(infos: list[ImageInput], labels: torch.Tensor, conf: torch.Tensor, writer: Any,
                   echo: Callable[[str], None], with_errors: bool = False) -> None:
    results = iter(zip(labels, conf))
    for info in infos:
        if info.error:
            if writer:
                writer.writerow([str(info.path), "", "", info.error])
            continue
        lab, p = next(results)
        name = CLASSES[int(lab)] if int(lab) < len(CLASSES) else str(int(lab))
        echo(f"{str(info.path):<40}  {name:<10} {float(p):6.3f}  "
             f"{info.original_size[0]}x{info.original_size[1]} {info.mode}")
        if writer:
            writer.writerow([str(info.path), name, f"{float(p):.6f}"] + ([""] if with_errors else []))
