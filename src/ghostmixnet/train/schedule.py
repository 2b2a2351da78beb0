"""Learning-rate schedules: the paper's cosine warm restarts (per epoch) and a one-cycle (per step)."""

from __future__ import annotations

import torch

from ..config import TrainConfig


class OneCycle:
    """Learning-rate factor after ``step`` steps: a linear ramp over the first ``warmup_steps`` steps up to
    1, then a linear decay that reaches zero just after the last of ``total_steps`` steps.

    A class rather than a closure so that it pickles and a scheduler's state dict stays plain.
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"one-cycle needs 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
        self.total_steps, self.warmup_steps = total_steps, warmup_steps

    def resize(self, total_steps: int, done: int = 0) -> None:
        """Stretch or shrink the schedule to ``total_steps`` after ``done`` steps (a time budget re-planned). A
        warm-up still in progress keeps its share of the run; one that is over stays as it was."""
        if total_steps < 1:
            raise ValueError(f"one-cycle needs at least one step, got {total_steps}")
        if done < self.warmup_steps:
            self.warmup_steps = max(done, round(self.warmup_steps * total_steps / self.total_steps))
        self.total_steps, self.warmup_steps = total_steps, min(self.warmup_steps, total_steps - 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return max(0.0, (self.total_steps - step) / (self.total_steps - self.warmup_steps))


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """The config's schedule and whether it is stepped after every optimizer step (else after every epoch)."""
    if cfg.schedule == "onecycle":
        total = cfg.epochs * steps_per_epoch
        factor = OneCycle(total, min(int(cfg.warmup * total), total - 1))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_epochs, T_mult=cfg.restart_mult, eta_min=cfg.min_lr), False
