"""Calibration: whether a model's confidence matches how often it is right (ECE and the reliability diagram)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files import pyplot, save_figure


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
