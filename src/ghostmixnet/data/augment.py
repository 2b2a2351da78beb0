"""The training augmentations: the paper's recipe as one table, and its two backends side by side.

:func:`train_transform` builds it from torchvision's per-image PIL transforms (the reference, run in
DataLoader workers); :class:`BatchPipeline` applies the same recipe to whole uint8 batches on the
training device, from the operations in ``batch_ops`` and ``batch_autoaugment``, with each image's
parameters drawn from the same distributions. Both read :data:`PAPER`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..device import quiet_cpu_compiler
from .batch_autoaugment import autoaugment, sample_autoaugment
from .batch_ops import (
    COLOR_OPS,
    color_jitter,
    normalize,
    pad_crop,
    perspective,
    perspective_coefficients,
    posterize,
    sample_color_jitter,
    sample_crop,
    sample_perspective,
    to_device,
)
from .cifar import MEAN, STD
from .degrade import degrade_batch, sample_degradations

if TYPE_CHECKING:
    from torchvision import transforms as T


@dataclass(frozen=True)
class Recipe:
    """The paper's per-image training augmentations, in the order applied (then AutoAugment's CIFAR10 policy)."""

    flip: float = 0.5
    """Probability of a horizontal flip."""
    pad: int = 4
    """Zero padding on every side before the random 32x32 crop (at other sizes in proportion: :func:`padding`)."""
    perspective_distortion: float = 0.5
    perspective_p: float = 0.5
    """RandomPerspective's distortion scale and probability (torchvision's defaults)."""
    posterize_bits: int = 4
    posterize_p: float = 0.4
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.1)
    """ColorJitter's brightness, contrast, saturation and hue."""


PAPER = Recipe()


def padding(size: int) -> int:
    """The crop's padding for ``size``-pixel images: the recipe's 4 pixels at 32, the same share of the image at
    other sizes (8 at 64), so that a crop moves the picture as far at every size."""
    return max(1, round(PAPER.pad * size / 32))


def train_transform(augment: str, mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                    size: int = 32) -> T.Compose:
    """The per-image (PIL) training pipeline of ``size``-pixel images for ``augment`` = ``paper``, ``basic``
    (flip and crop) or ``none``, then to tensor and normalize with ``mean`` and ``std``."""
    from torchvision import transforms as T  # when needed: importing torchvision costs every command a second

    r, steps = PAPER, []
    if augment in ("paper", "basic"):
        steps += [T.RandomHorizontalFlip(r.flip), T.RandomCrop(size, padding=padding(size))]
    if augment == "paper":
        brightness, contrast, saturation, hue = r.jitter
        steps += [
            T.RandomPerspective(distortion_scale=r.perspective_distortion, p=r.perspective_p),
            T.RandomPosterize(bits=r.posterize_bits, p=r.posterize_p),
            T.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue),
            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
        ]
    elif augment not in ("basic", "none"):
        raise ValueError(f"unknown augmentation {augment!r}")
    return T.Compose(steps + eval_transform(mean, std).transforms)


def eval_transform(mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> T.Compose:
    """Evaluation: to tensor and normalize only."""
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


class BatchPipeline:
    """The per-image training pipeline of :func:`train_transform`, on whole uint8 batches on their device,
    reading the same :data:`PAPER` table: ``paper``, ``basic`` (flip and crop) or ``none``. Every parameter
    is drawn per image (:meth:`sample`) from a generator on the CPU (the draws are small), then applied
    (:meth:`apply`) where the images are; an image's result depends on its own draws alone, so batches may
    be applied together.
    With ``compile``, the colour operations (chains of elementwise arithmetic) run as kernels
    ``torch.compile`` fuses, compiled once for any batch size; the draws and results are unchanged
    up to float rounding.
    """

    def __init__(self, augment: str, compile: bool = False, degrade: float = 0.0) -> None:
        if augment not in ("paper", "basic", "none"):
            raise ValueError(f"unknown augmentation {augment!r}")
        if not 0.0 <= degrade <= 1.0:
            raise ValueError(f"degrade is a share of the images and must be in [0, 1], got {degrade!r}")
        self.augment, self.degrade = augment, degrade
        if compile:
            quiet_cpu_compiler()
        self.color_ops = (tuple(torch.compile(op, dynamic=True) for op in COLOR_OPS)
                          if compile and augment == "paper" else COLOR_OPS)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.sample(len(images), generator, tuple(images.shape[-2:])))

    def sample(self, n: int, generator: torch.Generator, size: tuple[int, ...] = (32, 32)) -> dict[str, Any]:
        """The parameters of ``n`` images of ``size`` (H, W), drawn from ``generator`` in a fixed order: the
        augmentation's, then (with ``degrade``) the degradations' (:mod:`~ghostmixnet.data.degrade`)."""
        params = self._sample_augment(n, generator, size)
        if self.degrade:
            params["degrade"] = sample_degradations(n, self.degrade, generator, (size[0], size[1]))
        return params

    def _sample_augment(self, n: int, generator: torch.Generator, size: tuple[int, ...]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.augment == "none":
            return params
        r = PAPER
        params["flip"] = torch.rand(n, generator=generator) < r.flip
        params["top"], params["left"] = sample_crop(n, padding(size[0]), generator)
        if self.augment == "basic":
            return params
        params["warp"] = torch.rand(n, generator=generator) < r.perspective_p
        params["start"], params["end"] = sample_perspective(n, size[0], size[1], r.perspective_distortion, generator)
        params["bits"] = torch.where(torch.rand(n, generator=generator) < r.posterize_p, r.posterize_bits, 8)
        params["factors"], params["order"] = sample_color_jitter(n, generator, *r.jitter)
        params["autoaugment"] = sample_autoaugment(n, generator)
        return params

    def apply(self, images: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """Augment a uint8 batch with the parameters :meth:`sample` drew for it."""
        out = self._apply_augment(images, params)
        return degrade_batch(out, params["degrade"]) if "degrade" in params else out

    def _apply_augment(self, images: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if self.augment == "none":
            return images
        out = pad_crop(images, params["top"], params["left"], padding=padding(images.shape[-2]),
                       flip=params["flip"])
        if self.augment == "basic":
            return out
        warp = params["warp"]
        if warp.any():
            chosen = warp.nonzero().flatten()
            rows = to_device(chosen, out.device)
            out[rows] = perspective(out[rows], perspective_coefficients(params["start"][chosen],
                                                                        params["end"][chosen]))
        out = posterize(out, params["bits"])
        out = color_jitter(out, params["factors"], params["order"], self.color_ops)
        return autoaugment(out, params["autoaugment"])


def concat_params(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of several batches (from :meth:`BatchPipeline.sample`) as those of one."""
    return {key: concat_params([p[key] for p in parts]) if isinstance(value, dict)
            else torch.cat([p[key] for p in parts]) for key, value in parts[0].items()}


def select_params(params: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The parameters of the images ``rows`` (a CPU index tensor) of a batch's parameters."""
    return {key: select_params(value, rows) if isinstance(value, dict) else value[rows]
            for key, value in params.items()}


CUDA_AUGMENT_CHUNK = 16
"""Batches augmented together on CUDA GPUs by default. At batch 128 each operation's launch costs the host
more than the GPU spends on it (the H100 check: 16-19 ms of launches per batch for the paper's pipeline),
so sixteen batches sharing each launch should cut that sixteenfold; not yet measured on a GPU."""


def resolve_augment_chunk(chunk: int | None, device: torch.device) -> int:
    """``None`` becomes :data:`CUDA_AUGMENT_CHUNK` on CUDA and 1 elsewhere (a CPU is busy computing, not
    launching, so sharing launches gains it nothing)."""
    if chunk is not None:
        return chunk
    return CUDA_AUGMENT_CHUNK if torch.device(device).type == "cuda" else 1


def augment_in_chunks(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], pipeline: BatchPipeline, chunk: int,
                      draws: Callable[[int], torch.Generator], mean: tuple[float, ...], std: tuple[float, ...],
                      mark: Callable[[str], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented, normalized batches from uint8 ``batches``, ``chunk`` of them augmented in one pass.

    Batch ``i`` (counting from 0) draws its parameters from ``draws(i)`` whatever the chunk, and each image's
    result depends on its own draws alone, so every batch comes out as if augmented by itself: ``chunk``
    changes the speed, not the images. ``mark`` (e.g. :meth:`StepPhases.mark`) is told when a chunk's
    batches are in (``data``) and when they are augmented (``augment``).
    """
    source, first = iter(batches), 0
    while group := list(itertools.islice(source, chunk)):
        if mark is not None:
            mark("data")
        sizes = [len(images) for images, _ in group]
        params = concat_params([pipeline.sample(n, draws(first + i), tuple(images.shape[-2:]))
                                for i, (n, (images, _)) in enumerate(zip(sizes, group))])
        raw = group[0][0] if len(group) == 1 else torch.cat([images for images, _ in group])
        augmented = normalize(pipeline.apply(raw, params), mean, std)
        if mark is not None:
            mark("augment")
        first += len(group)
        yield from zip(augmented.split(sizes), (targets for _, targets in group))
