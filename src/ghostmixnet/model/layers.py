"""Building blocks: the Ghost module, the Ghost block and the ResNet basic block.

Every block follows the reference recipe fact by fact; these reusable pieces are what
``models.py`` stacks into whole networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .depthwise import depthwise_shifts, shiftable
from .fused_bn import fusable, ghost2_fused


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
    convolution of them; the two are concatenated and trimmed to ``out_ch`` channels. ``depthwise`` says how the
    cheap convolution computes (``depthwise.py``): the same function either way.
    """

    depthwise: str = "conv"

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
        if self.depthwise == "shifts" and shiftable(self.cheap[0]):
            cheap = self.cheap[1:](depthwise_shifts(intrinsic, self.cheap[0]))
        else:
            cheap = self.cheap(intrinsic)
        out = torch.cat([intrinsic, cheap], dim=1)
        return out[:, : self.out_ch] if self.trim else out


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation: each channel scaled by a sigmoid gate computed from all channels' means.

    The parameter names (``fc1``, ``fc2``) and operations are torchvision's ``ops.SqueezeExcitation``, so trained
    weights load unchanged and give the same logits; it is written here because importing torchvision's ops
    costs every command about a second (they load torch's compiler stack).
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity when shapes match, otherwise a strided 1x1 projection with BatchNorm."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_bn(in_ch, out_ch, 1, stride, relu=False)


class GhostBlock(nn.Module):
    """Residual block of two Ghost modules and Squeeze-and-Excitation.

    The reference applies a BatchNorm after each Ghost module on top of the module's own
    BatchNorms; it is kept (``extra_bn``) so that parameter counts and the learned function match the paper.
    The members sized for microcontrollers leave it out: after a concatenation that follows a ReLU it cannot
    fold into a convolution, and an int8 graph would compute it in float. With ``fused_bn`` set, training
    computes the second Ghost module and the BatchNorm after it with one set of batch statistics per layer pair
    (``fused_bn.py``): the same function, measured slower, kept as the measured alternative.
    """

    fused_bn: bool = False

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, se_divisor: int | None = 16,
                 extra_bn: bool = True) -> None:
        super().__init__()
        self.ghost1 = GhostModule(in_ch, out_ch, stride=stride, relu=True)
        self.bn1 = nn.BatchNorm2d(out_ch) if extra_bn else None
        self.ghost2 = GhostModule(out_ch, out_ch, stride=1, relu=False)
        self.bn2 = nn.BatchNorm2d(out_ch) if extra_bn else None
        self.se = SqueezeExcitation(out_ch, max(1, out_ch // se_divisor)) if se_divisor else nn.Identity()
        self.shortcut = shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the residual branch's last BatchNorm scales: the block starts as its shortcut."""
        last = [self.bn2] if self.bn2 is not None else [self.ghost2.primary[1], self.ghost2.cheap[1]]
        for bn in last:
            nn.init.zeros_(bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.bn1 is None:
            out = self.ghost2(out)
        else:
            out = self.relu(self.bn1(out))
            if self.fused_bn and self.training and fusable(self):
                out = ghost2_fused(self, out)
            else:
                out = self.bn2(self.ghost2(out))
        return self.relu(self.se(out) + self.shortcut(x))


class BasicBlock(nn.Module):
    """ResNet's two-convolution basic block, optionally with Squeeze-and-Excitation (the ablation rows)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, se_divisor: int | None = None) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride, relu=True)
        self.conv2 = conv_bn(out_ch, out_ch, 3, 1, relu=False)
        self.se = SqueezeExcitation(out_ch, max(1, out_ch // se_divisor)) if se_divisor else nn.Identity()
        self.shortcut = shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the residual branch's last BatchNorm scale: the block starts as its shortcut."""
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv2(self.conv1(x)))
        return self.relu(out + self.shortcut(x))
