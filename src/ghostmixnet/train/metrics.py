"""A run's own records: the metrics CSV, rewritten after every epoch, and the curve plots (redrawn as
:data:`~ghostmixnet.train.context.PLOT_EVERY_SECONDS` says)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from ..files import pyplot, save_figure, write_text_atomic

# val_split is "val" (held-out training images) or "test" (--val-size 0: the test set selects checkpoints);
# weights is which weights val_acc scored ("trained", or "average" when the moving average did better);
# the val fields are empty in epochs without validation (--val-every).
METRIC_FIELDS = ("epoch", "val_split", "lr", "train_loss", "val_loss", "val_acc", "weights", "images_per_s",
                 "seconds", "steps")


def write_metrics(path: Path, rows: Sequence[dict]) -> None:
    """One row per epoch, columns :data:`METRIC_FIELDS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k) for k in METRIC_FIELDS} for row in rows)
    write_text_atomic(path, buf.getvalue())


def plot_curves(rows: Sequence[dict], out_dir: Path, val_name: str = "validation") -> list[Path]:
    """``loss.png`` (train and val loss) and ``accuracy.png`` (val accuracy) by epoch."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator  # with pyplot: matplotlib is imported on first use

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
        save_figure(fig, out_dir / name)
        paths.append(out_dir / name)
    return paths
