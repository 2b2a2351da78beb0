"""Per-image transforms, in the reference order, on PIL images (as the reference applies them)."""

from __future__ import annotations

from torchvision import transforms as T

from .data import MEAN, STD


def train_transform(augment: str) -> T.Compose:
    """The training pipeline for ``augment`` = ``paper``, ``basic`` or ``none``.

    ``paper``: flip, crop with 4-pixel padding, perspective (torchvision defaults), posterize to 4
    bits with p 0.4, colour jitter, AutoAugment's CIFAR10 policy, then to tensor and normalize.
    """
    steps: list = []
    if augment in ("paper", "basic"):
        steps += [T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4)]
    if augment == "paper":
        steps += [
            T.RandomPerspective(distortion_scale=0.5, p=0.5),
            T.RandomPosterize(bits=4, p=0.4),
            T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
        ]
    elif augment not in ("basic", "none"):
        raise ValueError(f"unknown augmentation {augment!r}")
    return T.Compose(steps + eval_transform().transforms)


def eval_transform() -> T.Compose:
    """Evaluation: to tensor and normalize only."""
    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
