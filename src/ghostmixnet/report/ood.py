"""How well a score tells images of a model's classes from images of none of them: AUROC, the false-positive
rate at 95% recall, and out-of-distribution sets that need no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher ``inside`` the model's classes: the chance that
    a random inside image scores above a random outside one (ties count half)."""
    inside, outside = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    if not len(inside) or not len(outside):
        raise ValueError("AUROC needs scores of both kinds of images")
    both = np.concatenate([inside, outside])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both[order][np.r_[False, np.diff(both[order]) == 0]]):  # average the ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    wins = ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2
    return float(wins / (len(inside) * len(outside)))


def fpr_at_recall(inside: np.ndarray, outside: np.ndarray, recall: float = 0.95) -> float:
    """Share of outside images still accepted when the threshold keeps ``recall`` of the inside ones."""
    threshold = np.quantile(np.asarray(inside, np.float64), 1 - recall)
    return float((np.asarray(outside, np.float64) >= threshold).mean())


def synthetic_ood_sets(images: np.ndarray, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Four sets of ``count`` (N, 32, 32, 3) uint8 images of none of CIFAR-10's classes, made here rather than
    downloaded, from easy to hard: uniform noise; smooth colour blobs (noise at 4x4, upsampled); ``images``
    with their pixels shuffled (each image's colours kept, its shapes gone); ``images`` with their 8x8 patches
    shuffled (local texture kept, the object gone)."""
    rng = np.random.default_rng(seed)
    picked = images[rng.choice(len(images), size=count, replace=count > len(images))]
    coarse = torch.from_numpy(rng.random((count, 3, 4, 4), dtype=np.float32))
    blobs = F.interpolate(coarse, size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    pixels = picked.reshape(count, -1, 3)
    shuffled = np.stack([p[rng.permutation(len(p))] for p in pixels]).reshape(picked.shape)
    patches = picked.reshape(count, 4, 8, 4, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(count, 16, 8, 8, 3)
    mixed = np.stack([p[rng.permutation(16)] for p in patches])
    mixed = mixed.reshape(count, 4, 4, 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(picked.shape)
    return {"uniform noise": rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
            "smooth colour blobs": (blobs.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
            "pixel-shuffled test images": np.ascontiguousarray(shuffled),
            "patch-shuffled test images": np.ascontiguousarray(mixed)}
