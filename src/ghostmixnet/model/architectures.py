"""Whole networks, described as data tables and built by name (with random weights: the factory above
loads trained ones).

All share the reference skeleton: a 3x3 stem, three stages (64/128/256 channels for the paper's model,
fewer for the members sized for microcontrollers; strides 1, 2, 2), average pooling with kernel 4 (8x8 -> 2x2,
not global), dropout and a linear classifier over the 4 * C flattened features. They differ in the residual
block, the stages' depths and widths, and the SE squeeze.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BasicBlock, GhostBlock, conv_bn

CLASSIFIER = "fc"
"""The name of every model's classifier layer: what a fine-tuning replaces and may train at its own rate."""
IMAGE_SIZE = 32
"""The images' side at which every member was designed and the shipped weights trained (CIFAR's)."""


@dataclass(frozen=True)
class Architecture:
    """One network of the family, as a table."""

    block: str
    """``ghost`` (GhostBlock) or ``basic`` (ResNet BasicBlock)."""
    depths: tuple[int, ...]
    """Blocks per stage."""
    channels: tuple[int, ...] = (64, 128, 256)
    """Output channels per stage at width 1."""
    strides: tuple[int, ...] = (1, 2, 2)
    """Stride of each stage's first block."""
    stem_channels: int = 64
    """Channels of the 3x3 stem at width 1."""
    se_divisor: int | None = 16
    """SE squeeze width is ``channels // se_divisor``; None means no SE."""
    description: str = ""
    """One line for ``ghostmixnet info`` and the ablation table."""
    extra_bn: bool = True
    """Ghost blocks only: the reference's BatchNorm after each Ghost module (the paper's model has it)."""
    budget: str | None = None
    """The device budget the member is sized for (a key of :data:`~ghostmixnet.model.budgets.BUDGETS`), if any."""
    se_stages: tuple[bool, ...] | None = None
    """Which stages have SE (one flag per stage); None: all of them. A microcontroller spends most working memory
    in the full-resolution stage, where SE's gated copy of each map costs the most."""

    def __post_init__(self) -> None:
        stages = len(self.depths)
        for name in ("channels", "strides") + (("se_stages",) if self.se_stages is not None else ()):
            if len(getattr(self, name)) != stages:
                raise ValueError(f"Architecture.{name} needs one entry per stage ({stages}), got {getattr(self, name)}")
        if self.block not in ("ghost", "basic"):
            raise ValueError(f"Architecture.block must be 'ghost' or 'basic', got {self.block!r}")


ARCHITECTURES: dict[str, Architecture] = {
    "ghostmixnet": Architecture(
        "ghost", (4, 4, 4), se_divisor=16, description="GhostNet + SE: Ghost blocks [4, 4, 4], SE C/16 (the paper's)"
    ),
    # Members sized for microcontrollers (docs/microcontrollers.md): the paper's blocks, fewer and narrower.
    # IC01: 12 channels at full resolution and SE only at 16x16 and 8x8 keep TFLite Micro's arena under 64 KB.
    "ghostmixnet-ic01": Architecture(
        "ghost", (2, 2, 1), (12, 32, 64), stem_channels=12, se_divisor=4, extra_bn=False, budget="ic01",
        se_stages=(False, True, True),
        description="GhostNet + SE for MLPerf Tiny's IC01 budget: Ghost blocks [2, 2, 1] at 12/32/64, SE C/4 in "
                    "stages 2 and 3",
    ),
    # IC02: the same rule (SE where the maps are 16x16 and 8x8) keeps the arena under 160 KB.
    "ghostmixnet-ic02": Architecture(
        "ghost", (2, 3, 2), (32, 64, 128), stem_channels=32, se_divisor=8, extra_bn=False, budget="ic02",
        se_stages=(False, True, True),
        description="GhostNet + SE for MLPerf Tiny's IC02 budget: Ghost blocks [2, 3, 2] at 32/64/128, SE C/8 in "
                    "stages 2 and 3",
    ),
    "resnet": Architecture(
        "basic", (3, 4, 3), se_divisor=None, description="ResNet: basic blocks [3, 4, 3] (ablation baseline)"
    ),
    "resnet-se": Architecture(
        "basic", (3, 4, 3), se_divisor=2, description="ResNet + SE: basic blocks [3, 4, 3], SE squeeze C/2 (ablation)"
    ),
}

BLOCKS: dict[str, Callable[..., nn.Module]] = {"ghost": GhostBlock, "basic": BasicBlock}


def scale_channels(channels: int, width: float) -> int:
    """Channels at a width multiplier, rounded to a multiple of 8 (at least 8) so tiny models stay valid."""
    if width == 1.0:
        return channels
    return max(8, int(channels * width / 8 + 0.5) * 8)


class CifarNet(nn.Module):
    """A ResNet-style CIFAR classifier built from an :class:`Architecture` table."""

    def __init__(self, arch: Architecture, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        stem = scale_channels(arch.stem_channels, width)
        self.stem = conv_bn(3, stem, 3, 1, relu=True)
        block = BLOCKS[arch.block]
        stages: list[nn.Module] = []
        in_ch = stem
        se_stages = arch.se_stages or (True,) * len(arch.depths)
        for depth, channels, stride, se in zip(arch.depths, arch.channels, arch.strides, se_stages):
            out_ch = scale_channels(channels, width)
            options = {"extra_bn": arch.extra_bn} if arch.block == "ghost" else {}
            se_divisor = arch.se_divisor if se else None
            blocks = [block(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, se_divisor=se_divisor,
                            **options) for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        # The classifier sees the same grid at every image size: the pooling of a 32-pixel image (kernel 4, 8x8 ->
        # 2x2), so that weights move between sizes and 32 pixels is the model it always was.
        reduction = math.prod(arch.strides)
        pooled = IMAGE_SIZE // reduction // 4
        self.image_size = image_size
        self.feature_size = image_size // reduction
        self.pooled_size = pooled
        self.pool = nn.AvgPool2d(max(1, self.feature_size // pooled))
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch * pooled * pooled, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch (N, 3, S, S) at the model's :attr:`image_size` S to the last stage's feature map (N, C, S/4,
        S/4); other sizes give other maps."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map to logits (or to the pooled, flattened features with ``pre_logits``)."""
        # Traced exports take images of the model's size: the fixed pooling, without a shape test the tracer would
        # warn about.
        if torch.jit.is_tracing() or x.shape[-2:] == (self.feature_size, self.feature_size):
            x = self.pool(x)
        else:
            # Other sizes (progressive resizing trains early steps at 16 or 24 pixels) give other maps: the same
            # grid of window averages keeps the classifier's input, and equals the pooling above at its size.
            x = F.adaptive_avg_pool2d(x, self.pooled_size)
        x = torch.flatten(x, 1)
        if pre_logits:
            return x
        return self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_architecture(name: str, num_classes: int = 10, width: float = 1.0, dropout: float = 0.2,
                       image_size: int = IMAGE_SIZE) -> CifarNet:
    """A registered architecture by name for ``image_size``-pixel images, freshly initialised; raises ValueError
    naming the known ones otherwise. (:func:`~ghostmixnet.model.factory.build_model` adds the trained weights.)"""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if not width > 0 or width == float("inf"):
        raise ValueError(f"width must be positive (and finite), got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 512 \
            or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 from 16 to 512 pixels, got {image_size!r}")
    return CifarNet(ARCHITECTURES[name], num_classes=num_classes, width=width, dropout=dropout, image_size=image_size)


def zero_init_residuals(model: nn.Module) -> nn.Module:
    """Zero the last BatchNorm scale of every residual block's branch (each block then starts as its
    shortcut); returns ``model``."""
    for module in model.modules():
        if hasattr(module, "zero_init_last"):
            module.zero_init_last()
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
