"""The Ghost modules' cheap depthwise convolution as a sum of shifted copies of its input.

A 3 x 3 depthwise convolution is nine multiply-adds per output value. Written as nine shifted slices of the
padded input, each times its channel's weight, it is plain elementwise arithmetic that ``torch.compile`` fuses
with the BatchNorm and ReLU around it into a few kernels, forward and backward, where the framework's
convolution (cuDNN's on a GPU) runs as separate kernels of its own. A compute switch
(:attr:`~ghostmixnet.config.TrainConfig.depthwise`): same weights, same function. Under autocast the input and
weights are rounded to the autocast type, as the convolution would take them, and summed in fp32, as it sums, so
the two differ only in the order of the sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("conv", "shifts")


def depthwise_shifts(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for ``conv`` a bias-free depthwise convolution (groups equal to its input channels) with stride
    1, an odd square kernel and 'same' padding, computed as a sum of shifted slices."""
    weight = conv.weight
    kernel = weight.shape[-1]
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    inputs = x.to(dtype).float()
    taps = weight.to(dtype).float()
    if weight.shape[0] != x.shape[1]:  # each input channel feeds `multiplier` output channels, in order
        inputs = inputs.repeat_interleave(weight.shape[0] // x.shape[1], dim=1)
    pad = kernel // 2
    padded = F.pad(inputs, (pad, pad, pad, pad))
    height, width = x.shape[-2:]
    out = None
    for i in range(kernel):
        for j in range(kernel):
            term = padded[:, :, i:i + height, j:j + width] * taps[:, 0, i, j].view(1, -1, 1, 1)
            out = term if out is None else out + term
    return out.to(dtype)


def shiftable(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a convolution :func:`depthwise_shifts` computes."""
    k = conv.kernel_size
    return (conv.groups == conv.in_channels and conv.bias is None and conv.stride == (1, 1) and k[0] == k[1]
            and k[0] % 2 == 1 and conv.padding == (k[0] // 2, k[0] // 2) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros")


def set_depthwise(model: nn.Module, mode: str = "conv") -> nn.Module:
    """Compute every Ghost module's cheap convolution of ``model`` as ``mode`` says (``conv`` or ``shifts``);
    returns ``model``."""
    if mode not in MODES:
        raise ValueError(f"depthwise must be one of {', '.join(MODES)}, got {mode!r}")
    for module in model.modules():
        if hasattr(type(module), "depthwise"):  # Ghost modules
            module.depthwise = mode
    return model
