"""Building blocks: the Ghost module, the Ghost block and the ResNet basic block.

Every block follows the reference recipe fact by fact; these reusable pieces are what
``models.py`` stacks into whole networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """A bias-free convolution with 'same' padding, BatchNorm and an optional ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GhostModule(nn.Module):
    """GhostNet's module: a few intrinsic maps from a full convolution, the rest from a cheap depthwise one.

    With ``ratio`` r, ``ceil(out / r)`` intrinsic channels come from a ``kernel`` x ``kernel``
    convolution and ``(r - 1)`` times as many "ghost" channels from a ``cheap_kernel`` depthwise
    convolution of them; the two are concatenated and trimmed to ``out_ch`` channels.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        ratio: int = 2,
        cheap_kernel: int = 3,
        stride: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"GhostModule ratio must be at least 2, got {ratio}")
        self.out_ch = out_ch
        intrinsic = math.ceil(out_ch / ratio)
        # Trim only when ratio does not divide out_ch: a no-op slice still becomes a copying Slice in ONNX.
        self.trim = intrinsic * ratio != out_ch
        self.primary = conv_bn(in_ch, intrinsic, kernel, stride, relu=relu)
        self.cheap = conv_bn(intrinsic, intrinsic * (ratio - 1), cheap_kernel, 1, groups=intrinsic, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        out = torch.cat([intrinsic, self.cheap(intrinsic)], dim=1)
        return out[:, : self.out_ch] if self.trim else out


def shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity when shapes match, otherwise a strided 1x1 projection with BatchNorm."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_bn(in_ch, out_ch, 1, stride, relu=False)


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


class GhostBlock(nn.Module):
    """Residual block of two Ghost modules and Squeeze-and-Excitation.

    The reference applies a BatchNorm after each Ghost module on top of the module's own
    BatchNorms; it is kept so that parameter counts and the learned function match the paper.
    With ``fused_bn`` set, training computes the second Ghost module and the BatchNorm after it
    with one set of batch statistics per layer pair (:func:`double_batch_norm`) and no
    normalization of the concatenated map: the same function with fewer reductions, though on
    the CPUs measured so far PyTorch's native BatchNorm kernels made the plain path faster.
    """

    fused_bn: bool = False

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, se_divisor: int = 16) -> None:
        super().__init__()
        self.ghost1 = GhostModule(in_ch, out_ch, stride=stride, relu=True)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.ghost2 = GhostModule(out_ch, out_ch, stride=1, relu=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcitation(out_ch, max(1, out_ch // se_divisor))
        self.shortcut = shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.ghost1(x)))
        if self.fused_bn and self.training and self._fusable():
            out = self._ghost2_fused(out)
        else:
            out = self.bn2(self.ghost2(out))
        return self.relu(self.se(out) + self.shortcut(x))

    def _fusable(self) -> bool:
        bns = (self.ghost2.primary[1], self.ghost2.cheap[1], self.bn2)
        return (not self.ghost2.trim and all(bn.momentum is not None and bn.track_running_stats for bn in bns))

    def _ghost2_fused(self, x: torch.Tensor) -> torch.Tensor:
        conv_p, bn_p = self.ghost2.primary[0], self.ghost2.primary[1]
        conv_c, bn_c = self.ghost2.cheap[0], self.ghost2.cheap[1]
        m, bn2 = conv_p.out_channels, self.bn2
        u = conv_p(x)
        primary_out, primary, (mean_p, var_p) = double_batch_norm(
            u, bn_p, bn2.weight[:m], bn2.bias[:m], bn2.eps, keep_first=True)
        cheap_out, _, (mean_c, var_c) = double_batch_norm(conv_c(primary), bn_c, bn2.weight[m:], bn2.bias[m:], bn2.eps)
        _update_running_stats(bn2, torch.cat([mean_p, mean_c]), torch.cat([var_p, var_c]), u.numel() // m)
        return torch.cat([primary_out, cheap_out], dim=1)


class BasicBlock(nn.Module):
    """ResNet's two-convolution basic block, optionally with Squeeze-and-Excitation (the ablation rows)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, se_divisor: int | None = None) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride, relu=True)
        self.conv2 = conv_bn(out_ch, out_ch, 3, 1, relu=False)
        self.se = SqueezeExcitation(out_ch, max(1, out_ch // se_divisor)) if se_divisor else nn.Identity()
        self.shortcut = shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv2(self.conv1(x)))
        return self.relu(out + self.shortcut(x))
