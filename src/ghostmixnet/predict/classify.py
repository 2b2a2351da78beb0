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
from ..files import atomic_open, check_output, entry_problem, to_stderr
from ..infer.calibrate import UNCALIBRATED, UNSURE, Calibration, calibration_of, predict_for
from ..infer.load import load_classifier, model_classes
from ..infer.logits import Normalization, input_size, predict_logits
from ..model.checkpoint import resolve_checkpoint
from ..model.weights import PRETRAINED, names_shipped
from .inputs import collect_images, decode_images, is_pickle


def predict_inputs(model: Any, inputs: Sequence[Path], device: torch.device, out: Path | None = None,
                   batch_size: int = 256, tta: bool = False, skip_bad: bool = False,
                   echo: Callable[[str], None] = print, tta_shift: int = 0, reads: Sequence[Path] = (),
                   max_pixels: int = MAX_PIXELS, calibration: Calibration = UNCALIBRATED,
                   classes: Sequence[str] = CLASSES, normalization: Normalization | None = None) -> int:
    """Classify ``inputs`` with ``model`` (a module on ``device``, or an ONNX classifier, whose logits are one per
    name of ``classes`` and whose inputs are normalised as ``normalization`` says), a chunk at a time.
    ``out`` may be none of the files read: the inputs, the images in folders among them, and ``reads`` (the
    model's file).

    Images: a line each (file, label, probability, displayed size and mode, and "not sure" where the
    answer's out-of-distribution score falls below the ``calibration``'s threshold), and ``out`` as a CSV
    (file,label,probability,score,sure: the probability calibrated, the calibration's score (energy unless it
    names another), and whether it is at or above the threshold, empty without one; with ``skip_bad`` also
    error, which names each file that could not be read).
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
        problem = entry_problem(Path(inputs[0]))
        if problem is not None:
            raise DataError(f"input {inputs[0]} {problem}")
        out = out or Path("submission.csv")
        check_output(out, [*inputs, *reads])
        return _predict_course(model, Path(inputs[0]), device, out, batch_size, tta, tta_shift, echo, classes,
                               normalization)
    paths = collect_images(inputs, echo)  # paths only: cheap even for 50,000 files
    if out is not None:
        check_output(out, [*inputs, *paths, *reads])
    done = rows = 0
    with atomic_open(out, newline="") if out is not None else nullcontext() as handle:
        writer = csv.writer(handle, lineterminator="\n") if handle else None
        if writer:
            writer.writerow(["file", "label", "probability", "score", "sure"] + (["error"] if skip_bad else []))
        echo(f"{'file':<40}  {'label':<10} {'prob':>6}  input")
        size = input_size(model) or 32  # each photo read straight to the model's size
        for images, infos in decode_images(paths, batch_size, skip_bad, echo, count(max_pixels, "max_pixels"), size):
            logits, features = (predict_for(calibration, model, images, device, batch_size, tta, tta_shift,
                                            normalization) if len(images) else (torch.empty(0, len(classes)), None))
            _report_images(infos, Answers(logits, calibration, classes, features), writer, echo, skip_bad)
            done += len(logits)
            rows += len(infos)
        if rows != len(paths):  # one row per input, or no file at all
            raise RuntimeError(f"classified {rows} of the {len(paths)} inputs; {out or 'nothing'} was not written")
    if out:
        echo(f"wrote {out}")
    return done


def _predict_course(model: Any, path: Path, device: torch.device, out: Path, batch_size: int, tta: bool,
                    tta_shift: int, echo: Callable[[str], None], classes: Sequence[str],
                    normalization: Normalization | None) -> int:
    images, ids = read_course_file(path)
    echo(f"{path}: {len(images)} images; IDs " + ("from its 'ids' entry" if ids is not None else "are row indices"))
    ids = ids if ids is not None else list(range(len(images)))
    counts, rows = torch.zeros(len(classes), dtype=torch.long), 0
    with atomic_open(out, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ID", "Labels"])
        for start in range(0, len(images), batch_size):
            labels = predict_logits(model, images[start:start + batch_size], device, batch_size, tta,
                                    tta_shift, normalization).argmax(1)
            counts += torch.bincount(labels, minlength=len(classes))[: len(classes)]
            writer.writerows((ids[start + i], int(label)) for i, label in enumerate(labels))
            rows += len(labels)
        if rows != len(images):  # one row per image, or no submission at all
            raise RuntimeError(f"classified {rows} of the {len(images)} images; {out} was not written")
    summary = {classes[i]: int(c) for i, c in enumerate(counts)}
    echo(f"wrote {out}: {len(images)} rows (ID,Labels); predicted counts: {summary}")
    return len(images)


class Answers:
    """A chunk's answers from its logits: label, calibrated probability, score, and whether it is sure."""

    def __init__(self, logits: torch.Tensor, calibration: Calibration, classes: Sequence[str] = CLASSES,
                 features: torch.Tensor | None = None) -> None:
        self.classes = classes
        self.conf, self.labels = calibration.probabilities(logits).max(1)
        self.scores = (calibration.scores(logits, features) if len(logits) or features is not None
                       else torch.empty(0))
        self.unsure = calibration.unsure(self.scores)
        self.judged = calibration.threshold is not None

    def __len__(self) -> int:
        return len(self.labels)

    def row(self, i: int) -> tuple[str, str, str, str]:
        """The CSV fields of answer ``i``: label, probability, score, sure (yes, no, or empty without a threshold)."""
        lab = int(self.labels[i])
        sure = ("no" if self.unsure[i] else "yes") if self.judged else ""
        return (self.classes[lab] if lab < len(self.classes) else str(lab), f"{float(self.conf[i]):.6f}",
                f"{float(self.scores[i]):.4f}", sure)


def _report_images(infos: list[ImageInput], answers: Answers, writer: Any, echo: Callable[[str], None],
                   with_errors: bool = False) -> None:
    answered = 0  # images that could not be read have no answer
    for info in infos:
        if info.error:
            if writer:
                writer.writerow([str(info.path), "", "", "", "", info.error])
            continue
        name, prob, score, sure = answers.row(answered)
        answered += 1
        echo(f"{str(info.path):<40}  {name:<10} {float(prob):6.3f}  "
             f"{info.original_size[0]}x{info.original_size[1]} {info.mode}" + (f"  {UNSURE}" if sure == "no" else ""))
        if writer:
            writer.writerow([str(info.path), name, prob, score, sure] + ([""] if with_errors else []))


def is_model_path(path: Path) -> bool:
    """Whether a path names a model rather than images: a checkpoint, weights or ONNX file, a run folder, or
    the word ``pretrained`` (or ``pretrained:MODEL``)."""
    return (path.suffix.lower() in (".pt", ".onnx", ".safetensors") or (path.is_dir() and (path / "best.pt").is_file())
            or names_shipped(path))


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
    model, cfg, info = load_classifier(weights)
    calibration = calibration_of(info, str(weights))
    if not calibration.fitted:
        how = ("export it again from a calibrated checkpoint" if weights.suffix.lower() == ".onnx"
               else f"fit one with: ghostmixnet calibrate {named} --data-dir DATA")
        note(f"note: {weights.name} carries no calibration, so the probabilities are the plain softmax and no "
             f"answer is marked not sure; {how}")
    tta = (cfg is not None and cfg.tta) if tta is None else tta
    dev = resolve_device(device)
    return predict_inputs(model.to(dev), inputs, dev, out, batch_size=batch_size, tta=tta, skip_bad=skip_bad,
                          echo=echo, tta_shift=cfg.tta_shift if cfg is not None else 0, reads=[named, weights],
                          max_pixels=max_pixels, calibration=calibration, classes=model_classes(model, cfg),
                          normalization=cfg.normalization if cfg is not None else None)
