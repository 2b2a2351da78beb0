"""The degradations photos meet on their way to a model, as a training augmentation: JPEG compression, sensor
noise, blur (focus or motion at small scale) and low contrast (haze, dim light).

A model trained on clean CIFAR-10 loses about ten points on a test image saved as JPEG at quality 75 or given
noise of 8/255 (MODEL_CARD.md). Showing it such images during training, at strengths from barely visible to
heavy, is the cheapest way to make it hold up (the degradations a model card's corruption benchmark measures are
many more: ``benchmarks/corruption_benchmark.py`` reports the ones trained on apart from the others).

:func:`sample_degradations` draws each image's degradation (or none) and strength on the CPU, in a fixed order;
:func:`degrade_batch` applies them to a (N, 3, H, W) uint8 batch on its device. An image's result depends on its own
draws alone, so batches may be degraded together, as the other batch augmentations are.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

KINDS = ("jpeg", "noise", "blur", "contrast")
"""The degradations, in the order of the ``kind`` codes :func:`sample_degradations` draws."""

# Strength s in [0, 1] maps to these ranges, chosen so s = 1 is a little past the heaviest of the kind a user's
# photo shows (and past CIFAR-10-C's severity 5 for JPEG quality 40, noise 0.10).
JPEG_QUALITY = (95, 25)
"""JPEG quality at strength 0 and 1."""
NOISE_STD = (0.0, 0.12)
"""Gaussian noise standard deviation, of pixels in [0, 1], at strength 0 and 1."""
BLUR_SIGMA = (0.3, 1.5)
"""Gaussian blur sigma, in pixels of a 32-pixel image (in proportion at other sizes), at strength 0 and 1."""
CONTRAST = (1.0, 0.2)
"""Factor of each pixel's distance from the image's mean, at strength 0 and 1."""


def _between(ends: tuple[float, float], strength: torch.Tensor) -> torch.Tensor:
    start, end = ends
    return start + (end - start) * strength.double()


def sample_degradations(n: int, share: float, generator: torch.Generator,
                        size: tuple[int, int] = (32, 32)) -> dict[str, torch.Tensor]:
    """Per image: whether it is degraded (with probability ``share``), which of :data:`KINDS` (``kind``: -1 for
    none), its ``strength`` in [0, 1], and the standard-normal ``noise`` a noise degradation scales (drawn for
    every image so that the draws' order does not depend on the kinds)."""
    chosen = torch.rand(n, generator=generator) < share
    kind = torch.randint(len(KINDS), (n,), generator=generator)
    strength = torch.rand(n, generator=generator)
    noise = torch.randn((n, 3, *size), generator=generator)
    return {"kind": torch.where(chosen, kind, -1), "strength": strength, "noise": noise}


def degrade_batch(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (N, 3, H, W) uint8 ``images`` with the degradations :func:`sample_degradations` drew for them."""
    kind, strength = params["kind"], params["strength"]
    if not (kind >= 0).any():
        return images
    out = images.clone()
    for code, apply in enumerate((_jpeg, _noise, _blur, _contrast)):
        rows = (kind == code).nonzero().flatten()
        if len(rows):
            index = rows.to(images.device)
            out[index] = apply(images[index], strength[rows], params, rows)
    return out


def _jpeg(images: torch.Tensor, strength: torch.Tensor, params: dict, rows: torch.Tensor) -> torch.Tensor:
    """Each image saved as a JPEG at its quality and read back (PIL's codec, as a phone's photo is decoded)."""
    quality = _between(JPEG_QUALITY, strength).round().int().tolist()
    out = []
    for image, q in zip(images.permute(0, 2, 3, 1).cpu().numpy(), quality):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=q)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(images.device)


def _noise(images: torch.Tensor, strength: torch.Tensor, params: dict, rows: torch.Tensor) -> torch.Tensor:
    std = _between(NOISE_STD, strength).float().view(-1, 1, 1, 1) * 255
    noise = params["noise"][rows].to(images.device)
    return (images.float() + noise * std.to(images.device)).round_().clamp_(0, 255).to(torch.uint8)


def _blur(images: torch.Tensor, strength: torch.Tensor, params: dict, rows: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each image's own sigma: one grouped convolution, reflecting the edges."""
    n, c, h, w = images.shape
    sigma = _between(BLUR_SIGMA, strength).float() * h / 32
    radius = max(1, int(np.ceil(3 * float(sigma.max()))))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(images.device)  # (n, taps): separable
    x = F.pad(images.float().reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    per_channel = kernel.repeat_interleave(c, 0)
    x = F.conv2d(x, per_channel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(x, per_channel.view(n * c, 1, -1, 1), groups=n * c)
    return x.view(n, c, h, w).round_().clamp_(0, 255).to(torch.uint8)


def _contrast(images: torch.Tensor, strength: torch.Tensor, params: dict, rows: torch.Tensor) -> torch.Tensor:
    factor = _between(CONTRAST, strength).float().view(-1, 1, 1, 1).to(images.device)
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).round_().clamp_(0, 255).to(torch.uint8)
