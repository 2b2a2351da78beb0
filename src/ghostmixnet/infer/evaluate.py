"""Scoring a model on a labelled set: loss, accuracy and confusion matrix, shared among processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import Compute
from .logits import Normalization, predict_features, predict_logits

MAX_CONFUSION_CLASSES = 100
"""Up to this many classes a summary holds the whole confusion matrix."""


@dataclass
class EvalResult:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted) of one evaluation; with
    the logits of every image when one process scored them all."""

    loss: float
    accuracy: float
    confusion: np.ndarray
    logits: torch.Tensor | None = field(default=None, repr=False)
    features: torch.Tensor | None = field(default=None, repr=False)
    """The penultimate features of each image's plain view, when asked for (``evaluate(features=True)``)."""

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)

    def summary(self, classes: Sequence[str]) -> dict[str, Any]:
        """As JSON-able values: accuracy, loss, per-class accuracy (by class name) and the confusion matrix (up
        to :data:`MAX_CONFUSION_CLASSES` classes: a million-cell matrix is no report; the plot shows it)."""
        return {"accuracy": self.accuracy, "loss": self.loss,
                "per_class_accuracy": {c: float(a) for c, a in zip(classes, self.per_class_accuracy)},
                "confusion": self.confusion.tolist() if len(classes) <= MAX_CONFUSION_CLASSES else None}


class Shard(Protocol):
    """This process's share of an evaluation among several (a :class:`~ghostmixnet.train.distributed.DistEnv`)."""

    rank: int
    world_size: int

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor: ...


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, compute: Compute | torch.device,
             batch_size: int = 256, tta: bool = False, shard: Shard | None = None, tta_shift: int = 0,
             normalization: Normalization | None = None, features: bool = False) -> EvalResult:
    """Plain cross-entropy loss, top-1 accuracy and confusion matrix over a labelled uint8 set.

    ``tta`` averages each image's logits over its test-time views (:func:`tta_views`, ``tta_shift``);
    ``normalization`` is the model's (None: CIFAR-10's). With a ``shard`` of several processes each evaluates
    every ``world_size``-th image from its ``rank`` and the loss sums and confusion matrices are summed across
    processes, weighted by count. With ``features``, the result keeps the penultimate features too (for a
    feature-space "not sure" score), computed in the same pass.
    """
    rank, world_size = (shard.rank, shard.world_size) if shard is not None else (0, 1)
    mine, feats = images[rank::world_size], None
    if features:
        logits, feats = predict_features(model, mine, compute, batch_size, tta, tta_shift, normalization)
    else:
        logits = predict_logits(model, mine, compute, batch_size, tta, tta_shift, normalization)
    targets = torch.as_tensor(labels[rank::world_size]).long()
    if len(logits) != len(targets):  # a figure over other images than those read is never reported
        raise RuntimeError(f"the evaluation scored {len(logits)} images of the {len(targets)} it read")
    num_classes = logits.shape[1] if logits.numel() else int(np.max(labels)) + 1
    loss_sum = F.cross_entropy(logits, targets, reduction="sum").item() if logits.numel() else 0.0
    preds = logits.argmax(1) if logits.numel() else targets
    confusion = torch.bincount(targets * num_classes + preds, minlength=num_classes ** 2).double()
    totals = torch.cat([confusion, torch.tensor([loss_sum], dtype=torch.float64)])
    if shard is not None:
        totals = shard.all_reduce_sum(totals)
    confusion = totals[:-1].round().long().view(num_classes, num_classes).numpy()
    count = max(int(confusion.sum()), 1)
    whole = shard is None or shard.world_size == 1
    return EvalResult(float(totals[-1]) / count, float(np.trace(confusion)) / count, confusion,
                      logits if whole else None, feats if whole else None)
