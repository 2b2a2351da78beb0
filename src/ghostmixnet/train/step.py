"""One training step: mix the batch, forward and backward under autocast, then the guarded optimizer step."""

from __future__ import annotations

import torch
from torch import nn

from ..data.mix import BatchMixer
from ..device import Compute
from .distill import Distiller


def forward_backward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, mixer: BatchMixer,
                     scaler: torch.amp.GradScaler, compute: Compute, label_smoothing: float,
                     teacher: torch.Tensor | None = None, distiller: Distiller | None = None) -> torch.Tensor:
    """Mix the batch, forward under autocast, backward; returns the detached loss. With a ``distiller``, the
    loss matches ``teacher`` (the batch's cached teacher logits) too, on an unmixed batch.

    The optimizer step is left to the caller (:func:`optimizer_step`), which keeps a non-finite loss
    from the weights.
    """
    images = images.to(compute.device, non_blocking=True).contiguous(memory_format=compute.memory_format)
    targets = targets.to(compute.device, non_blocking=True)
    batch = mixer(images, targets)
    with compute.autocast():
        logits = model(batch.images)
    if distiller is not None:
        loss = distiller.loss(logits.float(), targets, teacher.to(compute.device), label_smoothing)
    else:
        loss = batch.loss(logits.float(), label_smoothing)
    scaler.scale(loss).backward()
    return loss.detach()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   loss: torch.Tensor | None = None, clear: bool = True) -> None:
    """Apply the accumulated gradients (unscaled by the gradient scaler) and clear them (unless ``clear`` is
    False: inside a CUDA graph capture, where the replays overwrite the gradients in place).

    With a fused optimizer and ``loss`` given, the update is skipped on the device when ``loss`` is not
    finite (weights, moments and step count stay as they were), so a loop may read the loss on the host
    only now and then and still never let a non-finite loss reach the weights. The gradient scaler, when
    enabled, does the same through the non-finite gradients such a loss leaves.
    """
    guard = loss is not None and not scaler.is_enabled() and bool(optimizer.defaults.get("fused"))
    if guard:
        # Fused optimizers read these two attributes (set by GradScaler for fp16): a nonzero found_inf
        # turns the step into a no-op inside the kernel.
        optimizer.found_inf = (~torch.isfinite(loss)).float()
        optimizer.grad_scale = None
    try:
        scaler.step(optimizer)
    finally:
        if guard:
            del optimizer.found_inf, optimizer.grad_scale
    scaler.update()
    if clear:
        optimizer.zero_grad(set_to_none=True)
