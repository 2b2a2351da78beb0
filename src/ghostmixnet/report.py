"""Run outputs people read: the metrics CSV, curve plots, confusion matrices."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import CLASSES
from .engine import EvalResult
from .files import atomic_open, write_text_atomic

# val_split is "val" (held-out training images) or "test" (--val-size 0: the test set selects checkpoints);
# weights is which weights val_acc scored ("trained", or "average" when the moving average did better);
# the val fields are empty in epochs without validation (--val-every).
METRIC_FIELDS = ("epoch", "val_split", "lr", "train_loss", "val_loss", "val_acc", "weights", "images_per_s",
                 "seconds")


def write_metrics(path: Path, rows: Sequence[dict]) -> None:
    """One row per epoch, columns :data:`METRIC_FIELDS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k) for k in METRIC_FIELDS} for row in rows)
    write_text_atomic(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rows: Sequence[dict], out_dir: Path, val_name: str = "validation") -> list[Path]:
    """``loss.png`` (train and val loss) and ``accuracy.png`` (val accuracy) by epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    paths = []
    for name, series, ylabel in (
        ("loss.png", [("train (mixed targets, smoothed)", "train_loss"), (val_name, "val_loss")], "loss"),
        ("accuracy.png", [(val_name, "val_acc")], "top-1 accuracy (%)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for label, key in series:
            kept = [r for r in rows if r.get(key) is not None]  # epochs without validation have no val figures
            values = [r[key] * (100 if key == "val_acc" else 1) for r in kept]
            ax.plot([r["epoch"] for r in kept], values, marker="o" if len(kept) < 30 else None, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_open(out_dir / name, "wb") as f:
            fig.savefig(f, format="png")
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def confusion_text(confusion: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as an aligned table (rows: true class, columns: predicted)."""
    short = [c[:5] for c in classes]
    width = max(5, len(str(int(confusion.max()))) if confusion.size else 1)
    lines = ["true \\ pred".ljust(12) + " ".join(s.rjust(width) for s in short)]
    for name, row in zip(classes, confusion):
        lines.append(name[:11].ljust(12) + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    """Confusion matrix heat map with counts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    high = confusion.max() / 2 if confusion.size else 0
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, int(v), ha="center", va="center", fontsize=7, color="white" if v > high else "black")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def eval_summary(result: EvalResult) -> dict[str, Any]:
    """An evaluation as JSON-able values: accuracy, loss, per-class accuracy and the confusion matrix."""
    return {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "per_class_accuracy": {c: float(a) for c, a in zip(CLASSES, result.per_class_accuracy)},
        "confusion": result.confusion.tolist(),
    }


def tta_views_text(shift: int) -> str:
    return f"mirror and {shift}-pixel shifts" if shift else "mirror"


def write_evaluation(result: EvalResult, checkpoint: Path, cfg: TrainConfig, epoch: Any, split: str, images: int,
                     tta: bool, out: Path, echo: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Print an evaluation (accuracy, per-class accuracy, confusion matrix) and write it as
    ``eval-CHECKPOINT-SPLIT.json`` and a confusion-matrix plot in ``out``; the two paths."""
    name = "test" if split == "test" else f"validation split ({images} training images, seed {cfg.split_seed})"
    echo(f"{checkpoint}: {cfg.model} (epoch {epoch}) on the {name}"
         + (f", with test-time augmentation ({tta_views_text(cfg.tta_shift)})" if tta else ""))
    if split == "test" and cfg.val_size == 0:
        echo("note: this checkpoint was selected on the test set itself (--val-size 0), so this figure is optimistic")
    echo(f"accuracy {100 * result.accuracy:.2f}% ({int(np.trace(result.confusion))}/{images}), "
         f"loss {result.loss:.4f}")
    echo("per-class accuracy:")
    for c, a in zip(CLASSES, result.per_class_accuracy):
        echo(f"  {c:<11} {100 * a:6.2f}%")
    echo("confusion matrix (rows: true, columns: predicted):")
    echo(confusion_text(result.confusion, CLASSES))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{Path(checkpoint).stem}-{split}"
    paths = out / f"{stem}.json", out / f"{stem}-confusion.png"
    write_text_atomic(paths[0], json.dumps({"checkpoint": str(checkpoint), "split": split, "images": images,
                                            "tta": tta, "tta_shift": cfg.tta_shift if tta else 0,
                                            **eval_summary(result)}, indent=2) + "\n")
    plot_confusion(result.confusion, CLASSES, paths[1], f"{cfg.model}, {split}: {100 * result.accuracy:.2f}%")
    echo(f"wrote {paths[0]} and {paths[1]}")
    return paths


def calibration_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of softmax ``probs`` (N, C) against ``labels``: the images binned by their
    top probability into ``bins`` equal-width bins, the count-weighted mean gap between each bin's mean
    confidence and its accuracy. Returns ``ece`` and, per bin, ``count``, ``confidence`` and ``accuracy``."""
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    filled = count > 0
    mean_conf = np.where(filled, conf_sum / np.maximum(count, 1), np.nan)
    mean_acc = np.where(filled, acc_sum / np.maximum(count, 1), np.nan)
    ece = float(np.sum(np.abs(conf_sum - acc_sum)) / max(len(labels), 1))
    return {"ece": ece, "edges": edges.tolist(), "count": count.tolist(),
            "confidence": [None if np.isnan(v) else float(v) for v in mean_conf],
            "accuracy": [None if np.isnan(v) else float(v) for v in mean_acc]}


def plot_reliability(calibration: dict[str, Any], path: Path, title: str) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with each bin's share of images."""
    plt = _pyplot()
    edges = np.asarray(calibration["edges"])
    width = np.diff(edges)
    acc = np.array([np.nan if v is None else v for v in calibration["accuracy"]])
    count = np.asarray(calibration["count"], dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), dpi=100, height_ratios=(3, 1), sharex=True)
    top.bar(edges[:-1], np.nan_to_num(acc), width=width, align="edge", edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_title(f"{title}: ECE {100 * calibration['ece']:.2f}%")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], count / max(count.sum(), 1), width=width, align="edge", edgecolor="black")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("share of images")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
