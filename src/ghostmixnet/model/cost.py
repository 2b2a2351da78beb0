"""Model size and cost: parameters and multiply-accumulates, per stage, from PyTorch's FLOP counter."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from .architectures import ARCHITECTURES, IMAGE_SIZE, CifarNet, build_architecture, count_parameters
from .budgets import BUDGETS, budget_lines


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
    """Cost of one image of the model's size through the stem, each stage and the head.

    PyTorch's counter counts convolutions and matrix products (a MAC is two FLOPs); BatchNorm,
    activations, pooling and SE's elementwise scaling are not counted, as is usual.
    """
    model = model.eval()
    x = torch.zeros(1, 3, model.image_size, model.image_size)
    rows = []
    x, flops = _flops(model.stem, x)
    rows.append(StageCost("stem", tuple(x.shape[1:]), _params(model.stem), flops // 2))
    for i, stage in enumerate(model.stages, 1):
        x, flops = _flops(stage, x)
        blocks = f"{len(stage)} block" + ("" if len(stage) == 1 else "s")
        rows.append(StageCost(f"stage{i} ({blocks})", tuple(x.shape[1:]), _params(stage), flops // 2))
    x, flops = _flops(model.forward_head, x)
    rows.append(StageCost("head (pool, dropout, fc)", tuple(x.shape[1:]), _params(model.fc), flops // 2))
    return rows


def total_macs(model: CifarNet) -> int:
    """Multiply-accumulates of one image of the model's size through the whole model (:func:`stage_costs` summed)."""
    return sum(r.macs for r in stage_costs(model))


def format_cost_table(rows: list[StageCost]) -> str:
    """An aligned text table with a total line."""
    lines = [f"{'part':<26} {'output':>12} {'parameters':>12} {'MACs':>14}"]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name:<26} {shape:>12} {r.parameters:>12,} {r.macs:>14,}")
    lines.append(f"{'total':<26} {'':>12} {sum(r.parameters for r in rows):>12,} {sum(r.macs for r in rows):>14,}")
    return "\n".join(lines)


def int8_file_estimate(model: nn.Module) -> int:
    """Bytes of an int8 LiteRT file of ``model`` before it is converted: a byte per convolution and linear weight
    (the BatchNorms fold into them), 28 per output channel (an int32 bias, and the weight's and the bias's
    per-channel float scale and int64 zero point) and 600 per layer (the records of its operators and tensors).
    Within 1.2% of the files litert-torch 0.10 wrote for eight microcontroller candidates (docs/microcontrollers.md);
    the former estimate, a byte a weight plus 8 per channel, was 28% under for the IC01 member."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(m.weight.numel() + 28 * m.weight.shape[0] + 600 for m in layers)


def describe_model(name: str, width: float = 1.0, num_classes: int = 10, image_size: int = IMAGE_SIZE) -> str:
    """What ``ghostmixnet info`` prints: the model's description, parameters, MACs, the per-stage table, and how
    it stands against each device budget (:mod:`~ghostmixnet.model.budgets`)."""
    model = build_architecture(name, num_classes=num_classes, width=width, image_size=image_size)
    rows = stage_costs(model)
    macs, parameters = sum(r.macs for r in rows), count_parameters(model)
    activations = peak_activation_bytes(model)
    sized_for = ARCHITECTURES[name].budget
    return "\n".join([
        f"{name}: {ARCHITECTURES[name].description}",
        f"width {width}, {num_classes} classes, input 3x{image_size}x{image_size}",
        f"parameters: {parameters:,}",
        f"MACs per image: {macs:,} ({macs / 1e9:.3f} GMAC, {2 * macs / 1e9:.3f} GFLOP; PyTorch FLOP counter)",
        f"peak activation memory, batch 1: {activations / 1e6:.2f} MB (measured: the most bytes of tensors alive at "
        "once in an eager forward pass)",
        format_cost_table(rows), "",
        *([f"sized for the {BUDGETS[sized_for].name} budget: {BUDGETS[sized_for].devices}"] if sized_for else []),
        *budget_lines(parameters, macs, int8_file_estimate(model), activations // 4),
        "(estimates; `ghostmixnet export --format tflite` measures both in TFLite Micro: the int8 file a byte per "
        "weight plus each channel's bias and quantization and each layer's records; the arena a quarter of the "
        "float peak above, which leaves out the runtime's per-operator state)"])


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of the tensors a forward pass creates while they are alive, and the most at once."""

    def __init__(self, existing: set[int]) -> None:
        super().__init__()
        self.existing, self.refs, self.sizes = existing, {}, {}
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer in self.existing or pointer == 0:  # weights, the input, empty tensors
                continue
            if pointer not in self.refs:  # a new buffer; views and in-place results share their base's
                self.refs[pointer], self.sizes[pointer] = 0, storage.nbytes()
                self.live += self.sizes[pointer]
                self.peak = max(self.peak, self.live)
            self.refs[pointer] += 1
            weakref.finalize(tensor, self._release, pointer)
        return out

    def _release(self, pointer: int) -> None:
        self.refs[pointer] -= 1
        if self.refs[pointer] == 0:
            del self.refs[pointer]
            self.live -= self.sizes.pop(pointer)


@torch.inference_mode()
def peak_activation_bytes(model: nn.Module, batch: int = 1) -> int:
    """The most bytes of activations alive at once during one eager forward pass of ``batch`` images.

    Measured, not estimated: every tensor the forward pass creates is counted from its creation until it is
    freed (its input and the weights are not; neither is a kernel's internal scratch space)."""
    model = model.eval()
    size = getattr(model, "image_size", IMAGE_SIZE)
    x = torch.zeros(batch, 3, size, size)
    existing = {t.untyped_storage().data_ptr() for t in [x, *model.parameters(), *model.buffers()]}
    mode = _LiveTensors(existing)
    with mode:
        model(x)
    return mode.peak
