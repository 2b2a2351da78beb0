"""The fused double BatchNorm of the Ghost block: the same function as the plain block with one set of
batch statistics per pair of BatchNorms (the Ghost module's and the block's after it).

Exact to float rounding (tests/model/test_layers.py) but measured slower than PyTorch's native BatchNorm
kernels on the CPUs here, so off in every recipe (``--fused-bn``); kept as the measured alternative.
"""

from __future__ import annotations

import torch
from torch import nn


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What a training-mode BatchNorm does to its buffers, given the batch's mean and biased variance."""
    with torch.no_grad():
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), bn.momentum)
        bn.running_var.lerp_((var * count / max(count - 1, 1)).to(bn.running_var.dtype), bn.momentum)
        bn.num_batches_tracked.add_(1)


def double_batch_norm(x: torch.Tensor, first: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor,
                      eps: float, keep_first: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
    """``second(first(x))`` in training mode with one pass of batch statistics instead of two.

    ``weight``, ``bias`` and ``eps`` are the second BatchNorm's, for the channels ``x`` has. The batch
    mean of ``first(x)`` is exactly ``first.bias`` and its biased variance
    ``first.weight**2 * var / (var + eps)``, so the second BatchNorm needs no statistics of its own:
    the output and its gradients equal the two-layer computation's. ``first``'s running statistics are
    updated here; the second layer's batch mean and variance are returned for the caller to apply.
    Returns ``second(first(x))``, ``first(x)`` if ``keep_first`` (else None), and those statistics.
    """
    count = x.numel() // x.shape[1]
    # Statistics in at least fp32, as BatchNorm keeps them, even when autocast made x bf16 or fp16.
    stats_input = x if x.dtype in (torch.float32, torch.float64) else x.float()
    var, mean = torch.var_mean(stats_input, dim=(0, 2, 3), correction=0)
    scale1 = first.weight * torch.rsqrt(var + first.eps)
    var1 = first.weight.square() * var / (var + first.eps)
    scale = scale1 * weight * torch.rsqrt(var1 + eps)
    # first.bias cancels out of second(first(x)); its gradient is exactly zero, and it stays in the graph
    # so that DistributedDataParallel still sees every parameter receive a gradient.
    shift = bias - mean * scale + 0.0 * first.bias
    out = x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    kept = None
    if keep_first:
        kept = x * scale1.view(1, -1, 1, 1) + (first.bias - mean * scale1).view(1, -1, 1, 1)
    _update_running_stats(first, mean.detach(), var.detach(), count)
    return out, kept, (first.bias.detach(), var1.detach())


def fusable(block: nn.Module) -> bool:
    """Whether a Ghost block can take the fused path (no trimmed channels, BatchNorms that track statistics)."""
    if block.bn2 is None:  # no BatchNorm after the module to fuse with
        return False
    bns = (block.ghost2.primary[1], block.ghost2.cheap[1], block.bn2)
    return (not block.ghost2.trim and all(bn.momentum is not None and bn.track_running_stats for bn in bns))


def ghost2_fused(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Ghost block's second Ghost module and the BatchNorm after it, with one set of batch statistics per pair."""
    conv_p, bn_p = block.ghost2.primary[0], block.ghost2.primary[1]
    conv_c, bn_c = block.ghost2.cheap[0], block.ghost2.cheap[1]
    m, bn2 = conv_p.out_channels, block.bn2
    u = conv_p(x)
    primary_out, primary, (mean_p, var_p) = double_batch_norm(
        u, bn_p, bn2.weight[:m], bn2.bias[:m], bn2.eps, keep_first=True)
    cheap_out, _, (mean_c, var_c) = double_batch_norm(conv_c(primary), bn_c, bn2.weight[m:], bn2.bias[m:], bn2.eps)
    _update_running_stats(bn2, torch.cat([mean_p, mean_c]), torch.cat([var_p, var_c]), u.numel() // m)
    return torch.cat([primary_out, cheap_out], dim=1)


def set_fused_bn(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every Ghost block of ``model`` to (or from) the fused double BatchNorm in training; the
    function computed, the parameters and the state dict are unchanged."""
    for module in model.modules():
        if hasattr(type(module), "fused_bn"):  # Ghost blocks
            module.fused_bn = enabled
    return model
