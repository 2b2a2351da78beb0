"""Robustness to common corruptions: a model's accuracy on copies of a test set under each corruption of
:mod:`ghostmixnet.data.corruptions` at each severity (CIFAR-10-C's protocol), and the table people read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.corruptions import CORRUPTIONS, SEVERITIES, check_choice, corrupt
from ..device import Compute
from ..infer.logits import Normalization, predict_logits


def corruption_accuracy(model: Any, images: np.ndarray, labels: np.ndarray, compute: Compute | Any,
                        normalization: Normalization | None = None, batch_size: int = 256,
                        names: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                        seed: int = 0) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` (a module or an ONNX classifier, one view per image, inputs normalised with
    ``normalization``) on (N, H, W, 3) uint8 ``images`` and on their corrupted copies, one per name and severity
    (corrupted with ``seed``). Returns ``clean``, ``per_corruption`` {name: {severity: accuracy}},
    ``mean_per_corruption`` {name: mean over the severities}, ``mean_corruption_accuracy`` (the mean of every
    corrupted copy's accuracy), ``per_severity`` {severity: mean over the names}, and ``seconds`` spent corrupting
    and scoring."""
    names, severities = list(names), [int(s) for s in severities]
    if not names or not severities:
        raise ValueError("name at least one corruption and one severity")
    for name in names:  # refuse a bad name or severity before any work
        for severity in severities:
            check_choice(name, severity)
    labels = np.asarray(labels)
    if len(labels) != len(images) or not len(images):
        raise ValueError(f"need as many labels as images, and some images: got {len(images)} images and "
                         f"{len(labels)} labels")
    seconds = {"corrupting": 0.0, "scoring": 0.0}

    def accuracy(batch: np.ndarray) -> float:
        started = time.perf_counter()
        logits = predict_logits(model, batch, compute, batch_size, tta=False, tta_shift=0,
                                normalization=normalization)
        seconds["scoring"] += time.perf_counter() - started
        return float((logits.argmax(1).numpy() == labels).mean())

    clean = accuracy(images)
    per_corruption: dict[str, dict[int, float]] = {}
    for name in names:
        per_corruption[name] = {}
        for severity in severities:
            started = time.perf_counter()
            corrupted = corrupt(images, name, severity, seed)
            seconds["corrupting"] += time.perf_counter() - started
            per_corruption[name][severity] = accuracy(corrupted)
    return {
        "clean": clean,
        "per_corruption": per_corruption,
        "mean_per_corruption": {n: float(np.mean(list(a.values()))) for n, a in per_corruption.items()},
        "mean_corruption_accuracy": float(np.mean([a for row in per_corruption.values() for a in row.values()])),
        "per_severity": {s: float(np.mean([per_corruption[n][s] for n in names])) for s in severities},
        "seconds": seconds,
    }


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of a :func:`corruption_accuracy` result: a row per corruption, a column per severity and
    their mean, then a row of means; accuracies in percent. Severity keys may be strings (read back from JSON)."""
    rows = result["per_corruption"]
    severities = sorted({int(s) for row in rows.values() for s in row})

    def cells(values: Sequence[float]) -> str:
        return " | ".join(f"{100 * v:.2f}" for v in values)

    def at(row: dict[Any, float], severity: int) -> float:
        return row[severity] if severity in row else row[str(severity)]

    per_severity = result["per_severity"]
    lines = ["| corruption | " + " | ".join(f"severity {s}" for s in severities) + " | mean |",
             "|---|" + "---:|" * (len(severities) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | {cells([at(row, s) for s in severities])} | "
                     f"{100 * result['mean_per_corruption'][name]:.2f} |")
    lines.append(f"| **mean** | {cells([at(per_severity, s) for s in severities])} | "
                 f"**{100 * result['mean_corruption_accuracy']:.2f}** |")
    return "\n".join(lines) + "\n"
