"""An evaluation as people read it: accuracy, per-class accuracy and the confusion matrix, printed, as JSON
and as a plot; and the command that evaluates a model file on the test set or its run's validation split."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data.cifar import cifar_files
from ..data.sources import check_classes, data_files, load_data
from ..device import resolve_device
from ..errors import DataError
from ..files import check_output, pyplot, save_figure, write_text_atomic
from ..infer.calibrate import Calibration, calibration_errors, calibration_of
from ..infer.evaluate import EvalResult, evaluate
from ..infer.load import load_classifier
from ..model.checkpoint import beside, resolve_checkpoint

FULL_TABLE = 20
"""Up to this many classes, the text report prints every class and the whole confusion matrix; with more,
the worst and best classes and the most frequent confusions (the JSON keeps every figure)."""


def top_confusions(confusion: np.ndarray, classes: Sequence[str], k: int = 15) -> list[tuple[str, str, int]]:
    """The ``k`` most frequent mistakes as (true class, predicted class, count), largest first."""
    off = confusion.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [np.unravel_index(i, off.shape) for i in flat]
    return [(classes[t], classes[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]


def per_class_text(accuracy: np.ndarray, classes: Sequence[str], k: int = 5) -> list[str]:
    """Lines of per-class accuracy: every class, or with more than :data:`FULL_TABLE` the ``k`` worst and best."""
    width = min(max(len(c) for c in classes), 24)

    def line(i: int) -> str:
        return f"  {classes[i][:width]:<{width}} {100 * accuracy[i]:6.2f}%"

    if len(classes) <= FULL_TABLE:
        return [line(i) for i in range(len(classes))]
    order = np.argsort(accuracy, kind="stable")
    return [f"  the {k} lowest of {len(classes)} classes:", *map(line, order[:k]), f"  the {k} highest:",
            *map(line, order[-k:])]


def confusion_text(confusion: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as an aligned table (rows: true class, columns: predicted); with more than
    :data:`FULL_TABLE` classes, the most frequent confusions instead."""
    if len(classes) > FULL_TABLE:
        mistakes = top_confusions(confusion, classes)
        return "\n".join([f"the {len(mistakes)} most frequent confusions (true -> predicted: images):"]
                         + [f"  {t} -> {p}: {n}" for t, p, n in mistakes])
    short = [c[:5] for c in classes]
    width = max(5, len(str(int(confusion.max()))) if confusion.size else 1)
    lines = ["true \\ pred".ljust(12) + " ".join(s.rjust(width) for s in short)]
    for name, row in zip(classes, confusion):
        lines.append(name[:11].ljust(12) + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    """Confusion matrix heat map: with counts up to :data:`FULL_TABLE` classes; a share of each true class's
    images, with names up to 60 classes and none beyond, with more (the figure keeps its size)."""
    n = len(classes)
    fig, ax = pyplot().subplots(figsize=(7, 6) if n <= FULL_TABLE else (9, 8), dpi=100)
    if n <= FULL_TABLE:
        ax.imshow(confusion, cmap="Blues")
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        high = confusion.max() / 2 if confusion.size else 0
        for i, row in enumerate(confusion):
            for j, v in enumerate(row):
                ax.text(j, i, int(v), ha="center", va="center", fontsize=7, color="white" if v > high else "black")
    else:
        shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class's images")
        named = n <= 60
        ax.set_xticks(range(n) if named else [], classes if named else [], rotation=90, fontsize=5)
        ax.set_yticks(range(n) if named else [], classes if named else [], fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def tta_views_text(shift: int) -> str:
    return f"mirror and {shift}-pixel shifts" if shift else "mirror"


def evaluation_files(out: Path, checkpoint: Path, split: str) -> tuple[Path, Path]:
    """The JSON and the plot :func:`write_evaluation` writes into ``out``."""
    stem = f"eval-{Path(checkpoint).stem}-{split}"
    return Path(out) / f"{stem}.json", Path(out) / f"{stem}-confusion.png"


def calibration_report(result: EvalResult, labels: np.ndarray, calibration: Calibration) -> dict[str, Any]:
    """Expected calibration error of an evaluation's probabilities, plain and (when the model has one) with
    its calibration, and the share of images its threshold marks not sure; empty without the logits."""
    if result.logits is None or not len(result.logits):
        return {}
    plain, calibrated = calibration_errors(calibration, result.logits, labels)
    report = {"ece_uncalibrated": plain}
    if calibration.fitted:
        report.update(ece=calibrated, temperature=calibration.temperature,
                      not_sure=float(calibration.unsure(calibration.scores(result.logits, result.features)).float()
                                     .mean()), score=calibration.score)
    return report


def calibration_text(report: dict[str, Any]) -> str:
    """One line on an evaluation's calibration (:func:`calibration_report`)."""
    text = f"expected calibration error {100 * report['ece_uncalibrated']:.2f}% with the plain softmax"
    if "ece" not in report:
        return text + " (this model carries no calibration: fit one with `ghostmixnet calibrate`)"
    return (text + f", {100 * report['ece']:.2f}% at its temperature {report['temperature']:.3f}; "
            f"{100 * report['not_sure']:.1f}% of these images marked not sure (by its {report['score']} score)")


def write_evaluation(result: EvalResult, checkpoint: Path, cfg: TrainConfig, epoch: Any, split: str, images: int,
                     tta: bool, out: Path, echo: Callable[[str], None] = print,
                     calibration: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Print an evaluation (accuracy, per-class accuracy, confusion matrix, and ``calibration``, a
    :func:`calibration_report`) and write it as ``eval-CHECKPOINT-SPLIT.json`` and a confusion-matrix plot
    in ``out``; the two paths."""
    name = "test" if split == "test" else f"validation split ({images} training images, seed {cfg.split_seed})"
    echo(f"{checkpoint}: {cfg.model} (epoch {epoch}) on the {name}"
         + (f", with test-time augmentation ({tta_views_text(cfg.tta_shift)})" if tta else ""))
    if split == "test" and cfg.selects_on_test:
        echo("note: this checkpoint was selected on the test set itself (--val-size 0), so this figure is optimistic")
    echo(f"accuracy {100 * result.accuracy:.2f}% ({int(np.trace(result.confusion))}/{images}), "
         f"loss {result.loss:.4f}")
    if calibration:
        echo(calibration_text(calibration))
    classes = cfg.class_names
    echo("per-class accuracy:")
    for line in per_class_text(result.per_class_accuracy, classes):
        echo(line)
    if len(classes) <= FULL_TABLE:
        echo("confusion matrix (rows: true, columns: predicted):")
    echo(confusion_text(result.confusion, classes))
    out.mkdir(parents=True, exist_ok=True)
    paths = evaluation_files(out, checkpoint, split)
    write_text_atomic(paths[0], json.dumps({"checkpoint": str(checkpoint), "split": split, "images": images,
                                            "tta": tta, "tta_shift": cfg.tta_shift if tta else 0,
                                            **result.summary(classes), "calibration": calibration or None},
                                           indent=2) + "\n")
    plot_confusion(result.confusion, classes, paths[1], f"{cfg.model}, {split}: {100 * result.accuracy:.2f}%")
    echo(f"wrote {paths[0]} and {paths[1]}")
    return paths


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, split: str = "test", out: Path | None = None,
                        device: str = "auto", batch_size: int = 256, tta: bool | None = None,
                        echo: Callable[[str], None] = print, dataset: str | None = None,
                        skip_bad: bool = False) -> EvalResult:
    """Evaluate a model file (checkpoint, run folder, weights or ONNX file written by ghostmixnet) on the
    ``test`` set of its data (``dataset``, default the one it was trained on, in ``data_dir``) or its run's
    ``val`` split, with its run's test-time views unless ``tta`` says otherwise, and report it
    (:func:`write_evaluation`) into ``out`` (default: beside the model). The data's classes must be the
    model's, by name and order."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be test or val, got {split!r}")
    source = checkpoint if Path(checkpoint).suffix.lower() == ".onnx" else resolve_checkpoint(checkpoint)
    out = Path(out) if out is not None else beside(source, ".")
    for written in evaluation_files(out, source, split):  # before the evaluation, which takes minutes
        check_output(written, [source, *cifar_files(data_dir)])
    model, cfg, ckpt = load_classifier(source)
    if cfg is None:
        raise DataError(f"{source} carries no ghostmixnet config (not exported by ghostmixnet), so its "
                        "validation split is unknown; export it with `ghostmixnet export`")
    dataset = dataset or cfg.dataset
    if split == "val" and dataset != cfg.dataset:
        raise DataError(f"--split val is the validation split of the model's own data ({cfg.dataset}); "
                        f"use --split test with --dataset {dataset}")
    if split == "val" and cfg.selects_on_test:
        raise DataError("this run had no validation split (--val-size 0 selected on the test set); use --split test")
    for written in evaluation_files(out, source, split):
        check_output(written, data_files(dataset, data_dir))
    splits = load_data(dataset, data_dir, **cfg.data_fields(), skip_bad=skip_bad, echo=echo)
    check_classes(cfg.class_names, splits.classes, model=source, data=f"the {dataset} data in {data_dir}")
    data = splits.test if split == "test" else splits.val
    dev = resolve_device(device)
    tta = cfg.tta if tta is None else tta
    fitted = calibration_of(ckpt, str(source))
    result = evaluate(model.to(dev), data.images, data.labels, dev, batch_size=batch_size, tta=tta,
                      tta_shift=cfg.tta_shift if tta else 0, normalization=cfg.normalization,
                      features=fitted.needs_features)
    calibration = calibration_report(result, data.labels, fitted)
    write_evaluation(result, source, cfg, ckpt.get("epoch", "?"), split, len(data), tta, out, echo, calibration)
    return result
