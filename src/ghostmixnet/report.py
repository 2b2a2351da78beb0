"""Run outputs people read: the metrics CSV, curve plots, confusion matrices."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# val_split is "val" (held-out training images) or "test" (--val-size 0: the test set selects checkpoints);
# weights is which weights val_acc scored ("trained", or "average" when the moving average did better);
# the val fields are empty in epochs without validation (--val-every).
METRIC_FIELDS = ("epoch", "val_split", "lr", "train_loss", "val_loss", "val_acc", "weights", "images_per_s",
                 "seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
        fig.savefig(out_dir / name)
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
    fig.savefig(path)
    plt.close(fig)
