"""Sizing a run to a budget of training time: how many epochs of a schedule fit, from a measured throughput.

A one-cycle schedule needs its length up front, so a run given a time budget first times a few of its
own training steps on this machine and then trains as many whole epochs as fit. The time limit stays
on as a guard, should the machine slow down.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..data.augment import resolve_augment_chunk
from ..data.cifar import ArraySet, load_cifar10
from ..data.resolution import ResolutionSchedule
from ..data.sources import load_data
from ..device import resolve_device
from .replan import REPLAN_MARGIN, Budget
from .throughput import training_throughput

MARGIN = 0.85
"""Share of the budget the planned steps may fill: room for steps slower than the measured ones. On the
2-core CPU here a 30-step burst measured 115.6 images/s where the hour that followed sustained 99.7-114.9
(docs/performance.md), and a run that outgrows its budget is cut before its last validation."""
WARMUP_STEPS = 3
"""Untimed steps before the timed ones (compilation happens in them)."""


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget of training time buys at a measured throughput."""

    minutes: float
    """The budget: training time, validation excluded."""
    images_per_s: float
    """Measured training throughput (images per second) of the run's own step on this machine."""
    compile_seconds: float
    """Time of the first, untimed steps (compilation)."""
    train_images: int
    """Images per epoch."""
    epochs: int
    """Whole epochs that fit."""
    steps: int = 0
    """Steps that fit, at the resolution schedule's mean cost (a run re-planned as it goes starts from these)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.images_per_s:.1f} images/s measured, first steps {self.compile_seconds:.0f} s -> "
                f"{self.epochs} epochs of {self.train_images:,} images fit {self.minutes:g} training-minutes"
                + (f" ({self.steps:,} steps, re-planned as the run goes)" if self.steps else ""))


def epochs_for_budget(minutes: float, images_per_s: float, compile_seconds: float, train_images: int,
                      margin: float = MARGIN) -> int:
    """Whole epochs of ``train_images`` that fit ``minutes`` at ``images_per_s`` (at least 1).

    A run compiles twice (the full batches, then the epoch's last, partial one), so twice the measured
    compile time comes off the budget first; the steps may fill ``margin`` of the rest.
    """
    if minutes <= 0 or images_per_s <= 0 or train_images < 1:
        raise ValueError("a budget needs positive minutes, throughput and training images")
    seconds_for_steps = 60 * minutes - 2 * compile_seconds
    return max(1, math.floor(margin * seconds_for_steps * images_per_s / train_images))


def epochs_for_steps(steps: int, train_images: int, batch_size: int) -> int:
    """The epochs ``steps`` steps reach (the last partial), at ``batch_size`` over ``train_images`` an epoch."""
    return -(-steps // -(-train_images // batch_size))


def plan_budget(cfg: TrainConfig, data: ArraySet, minutes: float, device: torch.device | None = None,
                steps: int = 30, margin: float = MARGIN, train_images: int | None = None) -> BudgetPlan:
    """Time ``steps`` of ``cfg``'s training step on ``device`` (fewer if ``data`` is small) with the first
    images of ``data`` (the training set before the validation split) and size the run to ``minutes`` of
    epochs of ``train_images`` (default: ``data`` less the validation split and beyond the subset)."""
    device = device or torch.device("cpu")
    chunk = resolve_augment_chunk(cfg.augment_chunk, device) if cfg.augment_backend == "batched" else 1
    warmup = -(-WARMUP_STEPS // chunk) * chunk
    fit = len(data) // cfg.batch_size - warmup  # a small training set times the steps it has
    steps = min(-(-steps // chunk) * chunk, fit - fit % chunk)
    if steps < 1:
        raise ValueError(f"timing the step needs at least {(warmup + chunk) * cfg.batch_size} training images "
                         f"(batch {cfg.batch_size}), {len(data)} given")
    needed = (warmup + steps) * cfg.batch_size
    # Timed at full size: the steps of a resolution schedule are then costed by their pixels.
    full_size = dataclasses.replace(cfg, resolutions="")
    measured = training_throughput(full_size, data.subset(np.arange(needed)), steps, WARMUP_STEPS, device)
    if train_images is None:
        train_images = min(cfg.train_subset or len(data), len(data) - cfg.val_size)
    epochs = epochs_for_budget(minutes, measured.images_per_s, measured.warmup_seconds, train_images, margin)
    # The burst trains at full size; smaller images cost less in proportion to their pixels.
    cost = ResolutionSchedule.parse(cfg.resolutions).cost()
    seconds = REPLAN_MARGIN * max(60 * minutes - 2 * measured.warmup_seconds, 0.0)
    steps = max(1, math.floor(seconds * measured.images_per_s / cost / cfg.batch_size))
    return BudgetPlan(minutes, measured.images_per_s, measured.warmup_seconds, train_images, epochs, steps)


def budget_config(cfg: TrainConfig, data_dir: Any, minutes: float, device: str = "auto",
                  download: bool = False, steps: int = 30, skip_bad: bool = False
                  ) -> tuple[TrainConfig, BudgetPlan, Budget | None]:
    """``cfg`` sized to ``minutes`` of training on ``device`` (timed on its data in ``data_dir``), its plan, and for
    a one-cycle schedule the :class:`Budget` the run re-plans its steps to as it goes (None otherwise: the run
    trains the whole epochs that fit, the time limit as a guard)."""
    if cfg.dataset == "cifar10":
        data = load_cifar10(data_dir, train=True, download=download)
        plan = plan_budget(cfg, data, minutes, resolve_device(device), steps)
    else:  # timed with the model of the data's classes, on its training split
        splits = load_data(cfg.dataset, data_dir, **cfg.data_fields(), train_subset=cfg.train_subset,
                           download=download, skip_bad=skip_bad)
        timed = cfg.for_splits(splits)
        plan = plan_budget(timed, splits.train, minutes, resolve_device(device), steps, train_images=len(splits.train))
    if cfg.schedule != "onecycle":
        return dataclasses.replace(cfg, epochs=plan.epochs), dataclasses.replace(plan, steps=0), None
    budget = Budget(60 * minutes, plan.compile_seconds, plan.steps)
    epochs = epochs_for_steps(plan.steps, plan.train_images, cfg.batch_size)
    return dataclasses.replace(cfg, epochs=epochs), plan, budget
