"""The per-channel mean and standard deviation a model normalises its inputs with, measured on a training set:
CIFAR-10's constants are these of its 50,000 training images, and a new dataset gets its own."""

from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and standard deviation of each channel of (N, H, W, C) uint8 ``images``, scaled to [0, 1], over
    every pixel; summed in float64 a chunk at a time, so memory stays flat for any N."""
    if images.ndim != 4 or images.dtype != np.uint8 or not len(images):
        raise ValueError(f"expected (N, H, W, C) uint8 images with N > 0, got {images.dtype} {images.shape}")
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total += part.sum(0)
        squares += (part * part).sum(0)
    count = images.size // images.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
