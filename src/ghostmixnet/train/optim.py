"""The optimizer of a run: AdamW or SGD over the config's parameter groups."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from ..model.architectures import CLASSIFIER


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = True,
                     lr: float | None = None, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer parameter groups: one decayed group, or, without ``decay_norm_and_bias``, the weights of
    convolutions and linear layers decayed and every one-dimensional parameter (normalisation scales and
    shifts, biases) not decayed. A ``backbone_lr_scale`` below 1 splits each group in two: the classifier's
    parameters at ``lr`` and the rest at ``backbone_lr_scale * lr`` (at 1, the groups are as they always were,
    so runs and their checkpoints do not change)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_norm_and_bias:
        groups = [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0}]
    if backbone_lr_scale == 1.0:
        return groups
    if lr is None:
        raise ValueError("a backbone_lr_scale other than 1 needs the learning rate")
    head = {id(p) for n, p in named if n.startswith(f"{CLASSIFIER}.")}
    split = []
    for group in groups:
        for in_head, rate in ((False, backbone_lr_scale * lr), (True, lr)):
            params = [p for p in group["params"] if (id(p) in head) == in_head]
            if params:
                split.append({**group, "params": params, "lr": rate})
    return split


def hold_backbone(model: nn.Module, held: bool) -> None:
    """Hold every layer but the classifier as it is (``held``), or let it learn again: no gradient flows into it
    (the optimizer skips parameters without one, so their weights and its state for them stay exactly as they
    were) and its BatchNorm layers normalise with their running statistics without updating them. Call after
    ``model.train()``, which would put them back in training mode."""
    for name, module in model.named_children():
        if name != CLASSIFIER and name != "head_drop":
            module.train(not held and model.training)
            for p in module.parameters():
                p.requires_grad_(not held)


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The config's optimizer (AdamW, or SGD with Nesterov momentum) over ``model``'s parameter groups; on CUDA
    its fused kernel, which also lets :func:`optimizer_step` skip a step with a non-finite loss on the device,
    without the host reading the loss first."""
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, cfg.lr, cfg.backbone_lr_scale)
    fused = True if device.type == "cuda" else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused)
    if cfg.step_graph == "whole" and device.type == "cuda":
        # Captured in a CUDA graph (step_graph.py): the update reads its step count and learning rate from device
        # tensors, which the scheduler fills in place, so that each replay uses the current ones.
        for group in groups:
            group["lr"] = torch.tensor(float(group.get("lr", cfg.lr)), device=device)
        return torch.optim.AdamW(groups, lr=torch.tensor(cfg.lr, device=device), betas=(cfg.beta1, cfg.beta2),
                                 fused=True, capturable=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
