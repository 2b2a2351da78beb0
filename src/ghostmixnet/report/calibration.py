"""Calibration as people see it: the reliability diagram of :func:`~ghostmixnet.infer.calibrate.calibration_bins`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files import pyplot, save_figure


def plot_reliability(calibration: dict[str, Any], path: Path, title: str) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with each bin's share of images."""
    edges = np.asarray(calibration["edges"])
    width = np.diff(edges)
    acc = np.array([np.nan if v is None else v for v in calibration["accuracy"]])
    count = np.asarray(calibration["count"], dtype=float)
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(5, 6), dpi=100, height_ratios=(3, 1), sharex=True)
    top.bar(edges[:-1], np.nan_to_num(acc), width=width, align="edge", edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_title(f"{title}: ECE {100 * calibration['ece']:.2f}%")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], count / max(count.sum(), 1), width=width, align="edge", edgecolor="black")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("share of images")
    fig.tight_layout()
    save_figure(fig, path)
