"""Calibrating a model in PyTorch's PT2E int8 flow (ExecuTorch's and LiteRT's quantizers), with a check that
preparing it left the function alone.

``prepare_pt2e`` rewrites the graph before it inserts observers (it folds BatchNorms into the convolutions
they read), and a rewrite that changes what the graph computes shows up only as lost accuracy after
quantization. The observers pass values through unchanged, so the prepared graph must give the float
model's logits on the first calibration batch: checked there, before the observations count.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import ExportError


def prepared_drift(prepared: nn.Module, model: nn.Module, batch: torch.Tensor) -> float:
    """How far the prepared graph's logits on ``batch`` are from ``model``'s, relative to their largest
    magnitude (float rounding: about 1e-6; a graph computing another function: 0.01 and more)."""
    with torch.no_grad():
        expected, got = model(batch), prepared(batch)
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-6))


def calibrate(prepared: nn.Module, model: nn.Module, batches: Iterable[torch.Tensor],
              tolerance: float = 1e-3) -> nn.Module:
    """Run ``batches`` through ``prepared`` (the output of ``prepare_pt2e`` for ``model``) so its observers
    see them; raise :class:`ExportError` if its logits on the first differ from ``model``'s by more than
    ``tolerance`` (relative): the int8 model would then quantize another function."""
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if i == 0:
                drift = prepared_drift(prepared, model, batch)
                if drift > tolerance:
                    raise ExportError(f"PyTorch's int8 preparation changed what the model computes (logits off by "
                                      f"{100 * drift:.2g}% of their range) before quantizing; the int8 file would "
                                      "be wrong, so none was written: please report it with your torch and torchao "
                                      "versions")
            else:
                prepared(batch)
    return prepared
