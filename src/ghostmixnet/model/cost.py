"""Model size and cost: parameters and multiply-accumulates, per stage, from PyTorch's FLOP counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .architectures import ARCHITECTURES, IMAGE_SIZE, CifarNet, build_architecture, count_parameters


@dataclass
class StageCost:
    name: str
    output_shape: tuple[int, ...]
    parameters: int
    macs: int


def _flops(fn, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    counter = FlopCounterMode(display=False)
    with counter:
        y = fn(x)
    return y, counter.get_total_flops()


def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@torch.no_grad()
def stage_costs(model: CifarNet) -> list[StageCost]:
    """Cost of one 32x32 image through the stem, each stage and the head.

    PyTorch's counter counts convolutions and matrix products (a MAC is two FLOPs); BatchNorm,
    activations, pooling and SE's elementwise scaling are not counted, as is usual.
    """
    model = model.eval()
    x = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    rows = []
    x, flops = _flops(model.stem, x)
    rows.append(StageCost("stem", tuple(x.shape[1:]), _params(model.stem), flops // 2))
    for i, stage in enumerate(model.stages, 1):
        x, flops = _flops(stage, x)
        rows.append(StageCost(f"stage{i} ({len(stage)} blocks)", tuple(x.shape[1:]), _params(stage), flops // 2))
    x, flops = _flops(model.forward_head, x)
    rows.append(StageCost("head (pool, dropout, fc)", tuple(x.shape[1:]), _params(model.fc), flops // 2))
    return rows


def format_cost_table(rows: list[StageCost]) -> str:
    """An aligned text table with a total line."""
    lines = [f"{'part':<26} {'output':>12} {'parameters':>12} {'MACs':>14}"]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name:<26} {shape:>12} {r.parameters:>12,} {r.macs:>14,}")
    lines.append(f"{'total':<26} {'':>12} {sum(r.parameters for r in rows):>12,} {sum(r.macs for r in rows):>14,}")
    return "\n".join(lines)


def describe_model(name: str, width: float = 1.0, num_classes: int = 10) -> str:
    """What ``ghostmixnet info`` prints: the model's description, parameters, MACs and the per-stage table."""
    model = build_architecture(name, num_classes=num_classes, width=width)
    rows = stage_costs(model)
    macs = sum(r.macs for r in rows)
    return "\n".join([
        f"{name}: {ARCHITECTURES[name].description}",
        f"width {width}, {num_classes} classes, input 3x32x32",
        f"parameters: {count_parameters(model):,}",
        f"MACs per image: {macs:,} ({macs / 1e9:.3f} GMAC, {2 * macs / 1e9:.3f} GFLOP; PyTorch FLOP counter)",
        format_cost_table(rows)])
