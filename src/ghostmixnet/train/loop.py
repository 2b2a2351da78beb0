"""The epoch loop: steps over an epoch's batches, reading the loss now and then, stopping where asked.

Each step draws its dropout and mixing from a generator seeded by (seed, epoch, step, rank): nothing
random carries over between steps, so a run resumed at any step continues exactly.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.loading import SEED_STEP, mix_seed
from ..data.mix import BatchMixer
from ..errors import NonFiniteLossError
from .compile import compile_error, compile_failure, mark_step
from .distributed import DistEnv
from .optim import hold_backbone
from .parts import Training
from .progress import Progress
from .step import forward_backward, optimizer_step


@dataclass
class EpochTotals:
    """An epoch's running totals: summed training loss, images and seconds of training so far (what a
    checkpoint saved within an epoch carries, so the resumed epoch reports as an uninterrupted one)."""

    loss_sum: float = 0.0
    images: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochTotals:
        return cls(float(data["loss_sum"]), int(data["images"]), float(data["seconds"]))


@dataclass
class EpochControl:
    """What :func:`train_one_epoch` needs from its caller besides the parts and the batches."""

    steps_per_epoch: int
    sync_every: int = 1
    """Read the loss and the requests to stop on the host every this many steps (and at the epoch's last):
    on a GPU each read makes the host wait for the step to finish before it can queue the next."""
    checkpoint_every: int = 0
    """Call ``save`` every this many steps within the epoch (0: never)."""
    save: Callable[[int], None] | None = None
    stop: dict[str, int] = field(default_factory=lambda: {"signal": 0})
    """Its ``signal`` is set (by a signal handler) to ask for a stop after the current step."""
    seconds_left: float | None = None
    """Training seconds the run has left at the epoch's start (its time limit), or None."""
    max_steps: int | None = None
    """Return after this many steps of this call (benchmarks)."""
    progress: Progress | None = None
    phases: Any = None
    """A :class:`~ghostmixnet.train.throughput.StepPhases` to mark each step's phases on, or None."""
    after_step: Callable[[int, float], bool] | None = None
    """Told each step done (the epoch's step, the epoch's training seconds so far); returns True where the run's
    planned steps end (a time budget re-planned as the run goes), which stops the epoch there."""


@dataclass
class EpochEnd:
    """Where :func:`train_one_epoch` stopped: the last step done, and whether a stop was asked for (the
    signal's number) or the time ran out. ``step < steps_per_epoch`` means it stopped within the epoch."""

    step: int
    signal: int = 0
    out_of_time: bool = False
    planned_end: bool = False
    """The run's planned steps ended here (:attr:`EpochControl.after_step`)."""


def train_one_epoch(t: Training, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int, step: int,
                    totals: EpochTotals, control: EpochControl, env: DistEnv) -> EpochEnd:
    """Train on ``batches``, the rest of epoch ``epoch`` (0-based) after step ``step``, adding to ``totals``.
    Stops at the epoch's end, or within it once a stop is asked for or the time is up
    (the caller saves and reports), or after ``control.max_steps``.

    Each step draws its dropout and mixing from a generator seeded by (seed, epoch, step, rank): nothing
    random carries over between steps, so a run resumed at any step continues exactly. With several
    processes every reduction happens at the same steps on all of them, so all stop at the same step.
    """
    device = t.compute.device
    started = time.perf_counter() - totals.seconds
    unread, unread_images, unread_from = torch.zeros((), dtype=torch.float64, device=device), 0, step + 1
    end, done, batch_iter = EpochEnd(step), 0, iter(batches)
    t.train_model.train()
    if t.cfg.freeze_epochs:
        hold_backbone(t.model, epoch < t.cfg.freeze_epochs)
    try:
        while control.max_steps is None or done < control.max_steps:
            if control.phases is not None:
                control.phases.begin()
            batch = next(batch_iter, None)
            if batch is None:
                break
            if control.phases is not None and t.pipeline is None:
                control.phases.mark("data")  # batched augmentation marks its own chunks
            step, done = step + 1, done + 1
            loss = _step(t, batch, epoch, step, env.rank)
            if control.phases is not None:
                control.phases.mark("forward_backward")
            unread += loss.double() * len(batch[0])
            unread_images += len(batch[0])
            late = control.seconds_left is not None and time.perf_counter() - started >= control.seconds_left
            if (step % control.sync_every == 0 or step == control.steps_per_epoch
                    or (control.checkpoint_every and step % control.checkpoint_every == 0)
                    or (not env.distributed and (late or bool(control.stop["signal"])))):
                end = _read(unread, unread_images, unread_from, step, epoch, late, totals, control, env)
                unread.zero_()
                unread_images, unread_from = 0, step + 1
            if t.stepper is None:
                optimizer_step(t.optimizer, t.scaler, loss)
            else:
                t.stepper.update(loss)
            if t.per_step_schedule:
                t.scheduler.step()
            if t.ema is not None:
                t.ema.update_parameters(t.model)
            if control.phases is not None:
                control.phases.mark("optimizer")
            totals.seconds = time.perf_counter() - started
            end.step = step
            if control.after_step is not None and control.after_step(step, totals.seconds):
                end.planned_end = True
            if control.progress is not None:
                control.progress.update(step, loss=totals.loss_sum / max(totals.images, 1))
            if step < control.steps_per_epoch:
                if end.out_of_time or end.signal or end.planned_end:
                    break
                if control.checkpoint_every and step % control.checkpoint_every == 0 and control.save is not None:
                    control.save(step)
        if end.planned_end and unread_images:  # the losses since the last read belong to the finished run
            end = _read(unread, unread_images, unread_from, step, epoch, False, totals, control, env)
            end.planned_end = True
    except Exception as e:
        if t.cfg.compile and compile_failure(e):
            raise compile_error(e) from e
        raise
    return end


def _step(t: Training, batch: tuple[torch.Tensor, ...], epoch: int, step: int, rank: int) -> torch.Tensor:
    """One step's forward and backward on ``batch`` (images, targets, and with distillation the teacher's
    logits); the optimizer step is the caller's. Returns the detached loss."""
    images, targets, *teacher = batch
    seed = mix_seed(SEED_STEP, t.cfg.seed, epoch, step, rank)
    torch.manual_seed(seed)  # dropout
    mixer = BatchMixer(t.cfg.mix_prob, t.cfg.mixup_share, t.cfg.mixup_alpha, t.cfg.cutmix_alpha, seed=seed)
    if t.stepper is not None:  # the step compiled as one graph (step_graph.py)
        return t.stepper.forward_backward(images, targets, mixer)
    if t.cfg.compile:
        mark_step()
    return forward_backward(t.train_model, images, targets, mixer, t.scaler, t.compute, t.cfg.label_smoothing,
                            teacher[0] if teacher else None, t.distiller)


def _read(unread: torch.Tensor, images: int, first: int, step: int, epoch: int, late: bool, totals: EpochTotals,
          control: EpochControl, env: DistEnv) -> EpochEnd:
    """Read the loss summed since step ``first`` (across processes, with each one's request to stop and
    lack of time: clocks differ, all must stop at the same step) into ``totals``; raise if it is not finite."""
    loss_sum, count, signalled, late_anywhere = env.all_reduce_sum(torch.tensor(
        [float(unread), images, float(control.stop["signal"]), float(late)], dtype=torch.float64)).tolist()
    if not np.isfinite(loss_sum):
        steps = f"step {step}" if first == step else f"steps {first}..{step}"
        raise NonFiniteLossError(f"the training loss became {loss_sum / count} at epoch {epoch + 1} {steps}; the "
                                 "weights were not updated with it")
    totals.loss_sum += loss_sum
    totals.images += int(count)
    # Every process acts on the reduced flag, so all stop at the same step even if only one was signalled.
    signal_seen = int(control.stop["signal"]) or (int(signal.SIGTERM) if signalled else 0)
    return EpochEnd(step, signal_seen, late_anywhere > 0)
