"""The optimizer of a run: AdamW or SGD over the config's parameter groups."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """Optimizer parameter groups: one decayed group, or, without ``decay_norm_and_bias``, the weights of
    convolutions and linear layers decayed and every one-dimensional parameter (normalisation scales and
    shifts, biases) not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The config's optimizer (AdamW, or SGD with Nesterov momentum) over ``model``'s parameter groups; on CUDA
    its fused kernel, which also lets :func:`optimizer_step` skip a step with a non-finite loss on the device,
    without the host reading the loss first."""
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    fused = True if device.type == "cuda" else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
