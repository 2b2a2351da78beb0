"""The inference graph: every BatchNorm folded that can be folded exactly, the rest made as small as it can be.

A trained Ghost block holds four kinds of BatchNorm:

- the ones right after a convolution (in every ``conv_bn``): folded into that convolution's weights and bias;
- ``bn1``, after ``ReLU(concat(primary, cheap))`` and before another ReLU. For a channel with scale
  ``s > 0`` and shift ``t <= 0``, ``ReLU(s * ReLU(z) + t) == s * ReLU(z + t / s)``: the scale moves forward
  into the input channels of the next convolution (a scale commutes with its zero padding), and on the
  cheap half the shift moves back into the cheap convolution's bias. The primary half's pre-activation
  also feeds the cheap convolution, so its shift stays as one ``ReLU(x + c)`` on that half. A block whose
  ``bn1`` has any channel with ``s <= 0`` or ``t > 0`` keeps it whole (a shift cannot cross a padded 3x3
  convolution exactly: the border would see it);
- ``bn2``, after ``concat(primary, cheap)`` with no ReLU between: its cheap half folds into the cheap
  convolution's output; its primary half stays as a per-channel affine on that half, because the primary
  output also feeds the padded depthwise convolution.

That affine is a depthwise 1x1 convolution, not a BatchNorm: PyTorch's int8 flow (PT2E, used for ExecuTorch
and LiteRT) folds every BatchNorm that reads a convolution's output into that convolution, even where the
output has other readers, and here the cheap convolution would then read the scaled output: an int8 program
computing another function (2 points of accuracy lost on the shipped weights). A convolution is left alone,
quantizes exactly (one weight per channel) and runs as an int8 kernel in every runtime.

The result computes the same function to float rounding (tests/deploy/test_fold.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..model.layers import GhostBlock


def fold_conv_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm that directly follows a convolution folded into it; the rest kept."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``x * scale + shift``, per channel."""
    scale = bn.weight.detach() * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


def _channel_affine(scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A per-channel affine as a depthwise 1x1 convolution (see the module's docstring for why not a BatchNorm)."""
    channels = scale.numel()
    conv = nn.Conv2d(channels, channels, 1, groups=channels).eval()
    with torch.no_grad():
        conv.weight.copy_(scale.view(channels, 1, 1, 1))
        conv.bias.copy_(shift)
    return conv


def _conv_of(seq: nn.Sequential) -> nn.Conv2d:
    """The (already BatchNorm-folded) convolution of a ``conv_bn`` sequence."""
    return seq[0]


class FoldedGhostBlock(nn.Module):
    """A Ghost block for inference: :func:`fold_for_inference` builds it from a trained block."""

    def __init__(self, block: GhostBlock) -> None:
        super().__init__()
        block = fold_conv_batchnorm(block)
        self.primary1, self.cheap1 = block.ghost1.primary, block.ghost1.cheap
        self.primary2, self.cheap2 = _conv_of(block.ghost2.primary), _conv_of(block.ghost2.cheap)
        self.se, self.shortcut, self.relu = block.se, block.shortcut, block.relu
        m1 = self.primary1[0].out_channels
        scale1, shift1 = _affine(block.bn1)
        self.folded_bn1 = bool((scale1 > 0).all() and (shift1 <= 0).all())
        with torch.no_grad():
            if self.folded_bn1:
                self.register_buffer("shift1", (shift1[:m1] / scale1[:m1]).view(1, -1, 1, 1))
                cheap_conv = _conv_of(self.cheap1)
                cheap_conv.bias.add_(shift1[m1:] / scale1[m1:])
                self.primary2.weight.mul_(scale1.view(1, -1, 1, 1))
                self.bn1 = None
            else:
                self.bn1 = block.bn1
            m2 = self.primary2.out_channels
            scale2, shift2 = _affine(block.bn2)
            self.cheap2.weight.mul_(scale2[m2:].view(-1, 1, 1, 1))
            self.cheap2.bias.mul_(scale2[m2:]).add_(shift2[m2:])
            self.affine2 = _channel_affine(scale2[:m2], shift2[:m2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary1(x)
        ghosts = self.cheap1(intrinsic)
        if self.bn1 is None:
            h = torch.cat([torch.relu(intrinsic + self.shift1), ghosts], dim=1)
        else:
            h = self.relu(self.bn1(torch.cat([intrinsic, ghosts], dim=1)))
        q = self.primary2(h)
        out = torch.cat([self.affine2(q), self.cheap2(q)], dim=1)
        return self.relu(self.se(out) + self.shortcut(x))


@dataclass(frozen=True)
class FoldReport:
    """What :func:`fold_for_inference` did with the BatchNorms that do not follow a convolution."""

    blocks: int
    """Ghost blocks rewritten."""
    bn1_folded: int
    """Blocks whose ``bn1`` folded (scale forward, shift back; one ``ReLU(x + c)`` on the primary half)."""
    bn1_kept: int
    """Blocks whose ``bn1`` has a channel with scale <= 0 or shift > 0, kept whole."""
    unchanged: int
    """Ghost blocks left as they were (trimmed channels), with only their convolutions' BatchNorms folded."""

    def __str__(self) -> str:
        text = (f"{self.blocks} Ghost blocks: bn1 folded in {self.bn1_folded} (kept in {self.bn1_kept}), "
                f"bn2's cheap half folded and its primary half one affine in all {self.blocks}")
        return text + (f"; {self.unchanged} with trimmed channels left as they were" if self.unchanged else "")


def fold_for_inference(model: nn.Module) -> tuple[nn.Module, FoldReport]:
    """An eval-mode copy of ``model`` computing the same function with the fewest BatchNorm nodes (see the
    module's docstring), and a report of what was folded."""
    model = copy.deepcopy(model).eval()
    blocks = folded = kept = unchanged = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, GhostBlock):
                continue
            if child.bn1 is None:  # no BatchNorm after its Ghost modules: folding its convolutions' is all
                continue
            if child.ghost1.trim or child.ghost2.trim:
                unchanged += 1
                continue
            new = FoldedGhostBlock(child)
            setattr(parent, name, new)
            blocks += 1
            folded, kept = folded + new.folded_bn1, kept + (not new.folded_bn1)
    return fold_conv_batchnorm(model), FoldReport(blocks, folded, kept, unchanged)
