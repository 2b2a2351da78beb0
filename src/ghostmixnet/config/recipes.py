"""The named recipes: presets of the config's fields, the paper's published figures, the reference compute path."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .types import TrainConfig

RECIPES: dict[str, dict[str, Any]] = {
    # The paper's full recipe: per-image augmentations, then Mixup/CutMix on every batch.
    "paper": {},
    # The paper's third table row: the same without Mixup/CutMix.
    "paper-nomix": {"mix_prob": 0.0},
    # The paper's first table row: random crop and flip only, no mixing.
    "basic": {"augment": "basic", "mix_prob": 0.0},
    # Short budgets (about ten epochs): light augmentation, no mixing, one cycle of the learning rate,
    # a weight average, and test-time augmentation over mirrored and 1-pixel-shifted views (on the
    # default, fast, compute path as every recipe). docs/recipe-search.md has every variant screened.
    "fast": {"epochs": 10, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-2, "schedule": "onecycle",
             "warmup": 0.2, "augment": "basic", "mix_prob": 0.0, "ema_decay": 0.99,
             "tta": True, "tta_shift": 1, "val_every": 4},
    # Fine-tuning the shipped CIFAR-10 weights on a small dataset of your own: every layer at lr (the new
    # classifier and the pretrained layers alike), batches of 32 for 20 epochs (a few hundred photos need the
    # steps), one cycle, light augmentation. Screened on two real photo sets (docs/own-data.md): a tenth of the
    # rate for the pretrained layers, 10 epochs at batch 64, a frozen phase, 1e-3, heavier augmentation, mixing
    # and 64 pixels all scored lower on validation. Compiled only where it pays: on a CPU, a few hundred
    # photos train in less time than compiling takes.
    "finetune": {"init": "pretrained", "epochs": 20, "batch_size": 32, "lr": 2e-3, "backbone_lr_scale": 1.0,
                 "weight_decay": 5e-2, "schedule": "onecycle", "warmup": 0.1, "augment": "basic", "mix_prob": 0.0,
                 "tta": True, "dataset": "folder", "compile": "auto"},
    # Holding up on the photos people take: the shipped CIFAR-10 weights trained on for a few epochs with half of
    # the images degraded as photos are (JPEG, noise, blur, low contrast: ghostmixnet.data.degrade), at a low rate so
    # that clean accuracy stays. MODEL_CARD.md has its corruption benchmark and the variants screened.
    "robust": {"init": "pretrained", "epochs": 3, "batch_size": 128, "lr": 5e-4, "weight_decay": 5e-2,
               "schedule": "onecycle", "warmup": 0.1, "augment": "basic", "mix_prob": 0.0, "degrade": 0.5,
               "ema_decay": 0.99, "tta": True, "tta_shift": 1, "val_every": 1},
}

# One line per recipe, for --help.
RECIPE_NOTES: dict[str, str] = {
    "paper": "the paper's full recipe: all augmentations, Mixup/CutMix, 200 epochs (about two days on a 2-core "
             "CPU, about 13 minutes on one H100)",
    "paper-nomix": "the paper's recipe without Mixup/CutMix (its third table row), 200 epochs",
    "basic": "flip and crop only, no mixing (the paper's first table row), 200 epochs",
    "fast": "short budgets: flip and crop, one learning-rate cycle, weight average, mirror and shift TTA, 10 epochs "
            "(--time-budget MINUTES sizes it to the time you have)",
    "finetune": "start from the shipped weights on a folder of your own classes: a new classifier, every layer "
                "learning, 20 epochs at batch 32",
    "robust": "fine-tune the shipped CIFAR-10 weights for 3 epochs with half the images JPEG-compressed, noisy, "
              "blurred or low in contrast (about 30 minutes on a 2-core CPU)",
}


# The authors' published run of the paper recipe: test accuracy (%) after these epochs (reference-recipe.md).
# They selected on the test set itself: their headline 95.5% is the best of the 200 per-epoch figures.
PAPER_TEST_CURVE: dict[int, float] = {1: 53.38, 5: 78.53, 10: 82.91, 20: 88.14, 30: 89.55, 40: 92.13, 50: 92.34,
                                      60: 91.05, 80: 92.77, 100: 93.75, 120: 93.57, 140: 94.98, 160: 93.04,
                                      180: 94.87, 200: 95.23}
PAPER_BEST_TEST_ACCURACY = 95.51
"""The paper's headline: the best of its run's 200 per-epoch test accuracies (%)."""


# The switches that turn the default (fast) compute path back into the reference one: per-image PIL
# transforms in worker processes, fp32, NCHW, the plain Ghost block, eager. What a run learns is meant to be
# the same on both (docs/performance.md); the reference is kept to measure that and the speed-up.
REFERENCE_COMPUTE: dict[str, Any] = {"precision": "fp32", "augment_backend": "torchvision", "num_workers": 2,
                                     "compile": False, "channels_last": False, "fused_bn": False}


def make_config(recipe: str = "paper", **overrides: Any) -> TrainConfig:
    """A preset with field overrides applied; ``None`` overrides are ignored (flags not given)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    values = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}, "recipe": recipe}
    return TrainConfig(**values)
