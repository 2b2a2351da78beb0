"""A model's logits for uint8 images: normalisation, test-time views and batched inference, on any device
and in any precision (:class:`~ghostmixnet.device.Compute`); the model a module or an ONNX classifier."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import count
from ..data.cifar import MEAN, STD
from ..data.images import resize_images
from ..device import Compute, as_compute

Normalization = tuple[Sequence[float], Sequence[float]]
"""A model's input normalisation: (mean, std) per channel, of pixels scaled to [0, 1]."""


def input_size(model: object) -> int | None:
    """The side of the images ``model`` takes (its ``image_size``: every classifier of the package has one), or
    None for a module that does not say."""
    return getattr(model, "image_size", None)


def normalize_uint8(images: np.ndarray | torch.Tensor, device: torch.device, channels_last: bool = False,
                    normalization: Normalization | None = None) -> torch.Tensor:
    """(N, S, S, 3) uint8 to normalized float (N, 3, S, S): the same arithmetic as ToTensor + Normalize, with
    the model's ``normalization`` (a config's :attr:`~ghostmixnet.config.RecipeConfig.normalization`; None:
    CIFAR-10's)."""
    mean, std = normalization or (MEAN, STD)
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def iterate_arrays(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """``images`` in consecutive slices of ``batch_size`` (the last one shorter)."""
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


def tta_views(x: torch.Tensor, shift: int = 0) -> list[torch.Tensor]:
    """Test-time views of a normalized batch: it and its mirror, and with ``shift`` also both shifted by
    ``shift`` pixels down-right and up-left (the edge reflected in), six views in all."""
    views = [x]
    if shift:
        _, _, h, w = x.shape
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        views += [padded[..., dy:dy + h, dx:dx + w] for dy, dx in ((0, 0), (2 * shift, 2 * shift))]
    return views + [v.flip(3) for v in views]


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, compute: Compute | torch.device, batch_size: int = 256,
                   tta: bool = False, tta_shift: int = 0, normalization: Normalization | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for (N, H, W, 3) uint8 images, in batches, where and in what precision
    ``compute`` says (a bare device: fp32); with ``tta`` the mean of the logits of the views of
    :func:`tta_views` (each image and its mirror; with ``tta_shift``, shifted copies too). ``normalization``
    is the model's (None: CIFAR-10's). Images of another size than the model's (:func:`input_size`) are resized
    to it first, as a photo of that size would be read (a 64-pixel model given CIFAR's 32-pixel arrays)."""
    batch_size = count(batch_size, "batch_size")
    compute = as_compute(compute)
    model.eval()
    outputs, size = [], input_size(model)
    for chunk in iterate_arrays(images, batch_size):
        if size is not None:
            chunk = resize_images(np.asarray(chunk), size)
        with compute.autocast():
            x = normalize_uint8(chunk, compute.device, compute.channels_last, normalization)
            views = tta_views(x, tta_shift) if tta else [x]
            logits = sum(model(v.contiguous(memory_format=compute.memory_format)).float() for v in views) / len(views)
            outputs.append(logits.cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def logits_and_features(model: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalized batch's logits and penultimate features (the classifier's input): from a module with
    ``forward_features`` and ``forward_head`` (timm's interface), or a classifier with ``logits_and_features``
    (an ONNX file exported with its features). A ``ValueError`` for a model that gives no features."""
    if hasattr(model, "logits_and_features"):
        return model.logits_and_features(x)
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"{type(model).__name__} gives its logits only, not the features a feature-space score "
                         "reads; use the checkpoint or weights file, or an ONNX file exported by this version")
    feature_map = model.forward_features(x)
    return model.forward_head(feature_map), model.forward_head(feature_map, pre_logits=True)


@torch.no_grad()
def predict_features(model: nn.Module, images: np.ndarray, compute: Compute | torch.device, batch_size: int = 256,
                     tta: bool = False, tta_shift: int = 0,
                     normalization: Normalization | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, as :func:`predict_logits` computes them, and the penultimate features (float32, on the CPU), in one
    pass: with ``tta`` both are the mean over the views (the service, which averages whatever its runtime gives
    over the views, then scores as this does)."""
    batch_size = count(batch_size, "batch_size")
    compute = as_compute(compute)
    model.eval()
    logits, features, size = [], [], input_size(model)
    for chunk in iterate_arrays(images, batch_size):
        if size is not None:
            chunk = resize_images(np.asarray(chunk), size)
        with compute.autocast():
            x = normalize_uint8(chunk, compute.device, compute.channels_last, normalization)
            views = tta_views(x, tta_shift) if tta else [x]
            both = [logits_and_features(model, v.contiguous(memory_format=compute.memory_format)) for v in views]
            logits.append((sum(out.float() for out, _ in both) / len(views)).cpu())
            features.append((sum(f.float() for _, f in both) / len(views)).cpu())
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(logits), torch.cat(features)
