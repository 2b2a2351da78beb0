"""Prediction: image files and folders, or the course's unlabeled test pickle, into labels and a CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..checks import count
from ..data.cifar import CLASSES
from ..data.course import read_course_file
from ..data.images import MAX_PIXELS, ImageInput
from ..device import resolve_device
from ..errors import DataError
from ..files import atomic_open, check_output, to_stderr
from ..infer.load import load_classifier
from ..infer.logits import predict_logits
from ..model.checkpoint import resolve_checkpoint
from ..model.weights import PRETRAINED
from .inputs import collect_images, decode_images, is_pickle


def predict_inputs(model: Any, inputs: Sequence[Path], device: torch.device, out: Path | None = None,
                   batch_size: int = 256, tta: bool = False, skip_bad: bool = False,
                   echo: Callable[[str], None] = print, tta_shift: int = 0, reads: Sequence[Path] = (),
                   max_pixels: int = MAX_PIXELS) -> int:
    """Classify ``inputs`` with ``model`` (a module on ``device``, or an ONNX classifier), a chunk at a time.
    ``out`` may be none of the files read: the inputs, the images in folders among them, and ``reads`` (the
    model's file).

    Images: a line each (file, label, probability, displayed size and mode), and ``out`` as a CSV
    (file,label,probability; with ``skip_bad`` also error, which names each file that could not be read).
    The course pickle: a submission CSV (ID,Labels: the pickle's own ``ids`` when it has them, else the row
    index; ``out`` or ``submission.csv``) and the predicted class counts. CSV rows are written as they come,
    to a temporary file renamed over ``out`` at the end. Returns the number of inputs classified.
    """
    batch_size = count(batch_size, "batch_size")
    if not inputs:
        raise DataError("no inputs given: name image files, folders, or one course test pickle")
    if any(is_pickle(p) for p in inputs):
        if len(inputs) != 1:
            raise DataError("give either image files and folders, or a single course test pickle, not both")
        if not Path(inputs[0]).is_file():
            raise DataError(f"input {inputs[0]} does not exist")
        out = out or Path("submission.csv")
        check_output(out, [*inputs, *reads])
        return _predict_course(model, Path(inputs[0]), device, out, batch_size, tta, tta_shift, echo)
    paths = collect_images(inputs, echo)  # paths only: cheap even for 50,000 files
    if out is not None:
        check_output(out, [*inputs, *paths, *reads])
    done = rows = 0
    with atomic_open(out, newline="") if out is not None else nullcontext() as handle:
        writer = csv.writer(handle, lineterminator="\n") if handle else None
        if writer:
            writer.writerow(["file", "label", "probability"] + (["error"] if skip_bad else []))
        echo(f"{'file':<40}  {'label':<10} {'prob':>6}  input")
        for images, infos in decode_images(paths, batch_size, skip_bad, echo, count(max_pixels, "max_pixels")):
            probs = (predict_logits(model, images, device, batch_size, tta, tta_shift).softmax(1) if len(images)
                     else torch.empty(0, len(CLASSES)))
            conf, labels = probs.max(1) if len(images) else (torch.empty(0), torch.empty(0, dtype=torch.long))
            _report_images(infos, labels, conf, writer, echo, skip_bad)
            done += len(labels)
            rows += len(infos)
        if rows != len(paths):  # one row per input, or no file at all
            raise RuntimeError(f"classified {rows} of the {len(paths)} inputs; {out or 'nothing'} was not written")
    if out:
        echo(f"wrote {out}")
    return done


def _predict_course(model: Any, path: Path, device: torch.device, out: Path, batch_size: int, tta: bool,
                    tta_shift: int, echo: Callable[[str], None]) -> int:
    images, ids = read_course_file(path)
    echo(f"{path}: {len(images)} images; IDs " + ("from its 'ids' entry" if ids is not None else "are row indices"))
    ids = ids if ids is not None else list(range(len(images)))
    counts, rows = torch.zeros(len(CLASSES), dtype=torch.long), 0
    with atomic_open(out, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ID", "Labels"])
        for start in range(0, len(images), batch_size):
            labels = predict_logits(model, images[start:start + batch_size], device, batch_size, tta,
                                    tta_shift).argmax(1)
            counts += torch.bincount(labels, minlength=len(CLASSES))[: len(CLASSES)]
            writer.writerows((ids[start + i], int(label)) for i, label in enumerate(labels))
            rows += len(labels)
        if rows != len(images):  # one row per image, or no submission at all
            raise RuntimeError(f"classified {rows} of the {len(images)} images; {out} was not written")
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


def is_model_path(path: Path) -> bool:
    """Whether a path names a model rather than images: a checkpoint, weights or ONNX file, a run folder, or
    the word ``pretrained``."""
    return (path.suffix.lower() in (".pt", ".onnx", ".safetensors") or (path.is_dir() and (path / "best.pt").is_file())
            or (str(path) == PRETRAINED and not path.exists()))


def predict_files(inputs: Sequence[Path], weights: Path | None = None, out: Path | None = None, device: str = "auto",
                  batch_size: int = 256, tta: bool | None = None, skip_bad: bool = False,
                  echo: Callable[[str], None] = print, note: Callable[[str], None] = to_stderr,
                  max_pixels: int = MAX_PIXELS) -> int:
    """Classify ``inputs`` (:func:`predict_inputs`) with the model ``weights`` names, else the first input when
    it names one (:func:`is_model_path`), else the shipped weights; with its run's test-time views unless
    ``tta`` says otherwise. ``note`` is told which model was taken. Returns the number of inputs classified."""
    inputs = [Path(p) for p in inputs]
    if weights is None and inputs and is_model_path(inputs[0]):
        weights, inputs = inputs[0], inputs[1:]
        if not inputs:
            raise ValueError(f"{weights} is a model; give images (or a course pickle) to classify after it")
    weights = named = Path(PRETRAINED) if weights is None else Path(weights)
    if weights.suffix.lower() != ".onnx":
        weights = resolve_checkpoint(weights)
    note(f"model: {weights.name}")  # which one was taken when none was named
    model, cfg, _ = load_classifier(weights)
    tta = (cfg is not None and cfg.tta) if tta is None else tta
    dev = resolve_device(device)
    return predict_inputs(model.to(dev), inputs, dev, out, batch_size=batch_size, tta=tta, skip_bad=skip_bad,
                          echo=echo, tta_shift=cfg.tta_shift if cfg is not None else 0, reads=[named, weights],
                          max_pixels=max_pixels)
