"""A training run's parts, built once from its config, the batches they train on, and the epoch loop.

The trainer and the throughput benchmark both build their parts here and train with
:func:`train_one_epoch`, so that what the benchmark times is what a run trains with: the model
(compiled and wrapped for several processes as the config and device say), AdamW, the schedule, the
gradient scaler, the weight average, the augmentation.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .augment import BatchPipeline, augment_in_chunks, resolve_augment_chunk, train_transform
from .config import TrainConfig
from .data import (
    MEAN,
    SEED_BATCH_AUGMENT,
    SEED_STEP,
    STD,
    ArraySet,
    DeviceBatches,
    ImageDataset,
    ResumableSampler,
    mix_seed,
)
from .distributed import DistEnv
from .engine import (
    Compute,
    Progress,
    build_optimizer,
    compile_model,
    forward_backward,
    mark_step,
    optimizer_step,
    prepare_device,
)
from .fused_bn import set_fused_bn
from .mix import BatchMixer
from .models import build_model, zero_init_residuals
from .pretrained import load_pretrained
from .schedule import build_scheduler


class RunError(Exception):
    """A run cannot start or continue as asked; the message says why and what to do."""


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite; the weights were not updated with it."""


@dataclass
class Training:
    """Everything a training step touches. ``model`` is the plain module (what checkpoints hold);
    ``train_model`` is what the steps call (compiled, and wrapped in DistributedDataParallel)."""

    cfg: TrainConfig
    compute: Compute
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    per_step_schedule: bool
    scaler: torch.amp.GradScaler
    ema: torch.optim.swa_utils.AveragedModel | None
    pipeline: BatchPipeline | None
    """The batched augmentation, or None when the DataLoader's workers augment (``torchvision``)."""
    augment_chunk: int


def build_training(cfg: TrainConfig, device: torch.device, steps_per_epoch: int,
                   distributed: bool = False) -> Training:
    """The parts of a run of ``cfg`` on ``device`` (seeded by ``cfg.seed``), with ``steps_per_epoch`` for
    schedules stepped per step; ``distributed`` wraps the model in DistributedDataParallel."""
    prepare_device(device)
    compute = Compute.resolve(device, cfg.precision, cfg.channels_last)
    torch.manual_seed(cfg.seed)
    model = set_fused_bn(build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout), cfg.fused_bn).to(device)
    if cfg.zero_init_residual:
        zero_init_residuals(model)
    if cfg.init is not None:
        load_pretrained(model, cfg.model, cfg.init)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, device)
    scheduler, per_step_schedule = build_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=compute.precision == "fp16")
    # The average includes BatchNorm statistics (use_buffers), so it can be evaluated as it is.
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
        cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None)
    train_model: nn.Module = model
    if distributed:
        if cfg.sync_bn:
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = compile_model(train_model, cfg.compile_mode, device, distributed)
    pipeline = BatchPipeline(cfg.augment, compile=cfg.compile) if cfg.augment_backend == "batched" else None
    return Training(cfg, compute, model, train_model, optimizer, scheduler, per_step_schedule, scaler, ema, pipeline,
                    resolve_augment_chunk(cfg.augment_chunk, device))


def build_loader(t: Training, data: ArraySet, sampler: ResumableSampler,
                 batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Raw batches in ``sampler``'s order: uint8 batches gathered on the device from the training set held
    there (batched augmentation), or augmented batches from DataLoader workers (``torchvision``)."""
    if t.pipeline is not None:
        return DeviceBatches(data, sampler, batch_size, t.compute.device)
    return DataLoader(ImageDataset(data, train_transform(t.cfg.augment)), batch_size=batch_size, sampler=sampler,
                      num_workers=t.cfg.num_workers, pin_memory=t.compute.device.type == "cuda")


def epoch_batches(t: Training, loader: Iterable[Any], epoch: int, first_step: int, rank: int = 0,
                  mark: Callable[[str], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalized training batches of ``epoch`` from ``loader``, whose first is step ``first_step``: the
    loader's own with ``torchvision``; augmented on the device, a chunk at a time, with batched augmentation
    (step s of the epoch draws from its own generator: a function of the seed, epoch, step and rank)."""
    if t.pipeline is None:
        return iter(loader)

    def draws(i: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(SEED_BATCH_AUGMENT, t.cfg.seed, epoch, first_step + i, rank))

    return augment_in_chunks(loader, t.pipeline, t.augment_chunk, draws, MEAN, STD, mark)


def new_totals() -> dict[str, Any]:
    """An epoch's running totals: summed training loss, images and seconds of training so far."""
    return {"loss_sum": 0.0, "images": 0, "seconds": 0.0}


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
    """A :class:`~ghostmixnet.throughput.StepPhases` to mark each step's phases on, or None."""


@dataclass
class EpochEnd:
    """Where :func:`train_one_epoch` stopped: the last step done, and whether a stop was asked for (the
    signal's number) or the time ran out. ``step < steps_per_epoch`` means it stopped within the epoch."""

    step: int
    signal: int = 0
    out_of_time: bool = False


def train_one_epoch(t: Training, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int, step: int,
                    totals: dict[str, Any], control: EpochControl, env: DistEnv) -> EpochEnd:
    """Train on ``batches``, the rest of epoch ``epoch`` (0-based) after step ``step``, adding to ``totals``
    (:func:`new_totals`). Stops at the epoch's end, or within it once a stop is asked for or the time is up
    (the caller saves and reports), or after ``control.max_steps``.

    Each step draws its dropout and mixing from a generator seeded by (seed, epoch, step, rank): nothing
    random carries over between steps, so a run resumed at any step continues exactly. With several
    processes every reduction happens at the same steps on all of them, so all stop at the same step.
    """
    device = t.compute.device
    started = time.perf_counter() - totals["seconds"]
    unread, unread_images, unread_from = torch.zeros((), dtype=torch.float64, device=device), 0, step + 1
    end, done, batch_iter = EpochEnd(step), 0, iter(batches)
    t.train_model.train()
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
            loss = _step(t, *batch, epoch, step, env.rank)
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
            optimizer_step(t.optimizer, t.scaler, loss)
            if t.per_step_schedule:
                t.scheduler.step()
            if t.ema is not None:
                t.ema.update_parameters(t.model)
            if control.phases is not None:
                control.phases.mark("optimizer")
            totals["seconds"] = time.perf_counter() - started
            end.step = step
            if control.progress is not None:
                control.progress.update(step, loss=totals["loss_sum"] / max(totals["images"], 1))
            if step < control.steps_per_epoch:
                if end.out_of_time or end.signal:
                    break
                if control.checkpoint_every and step % control.checkpoint_every == 0 and control.save is not None:
                    control.save(step)
    except Exception as e:
        if t.cfg.compile and compile_failure(e):
            raise compile_error(e) from e
        raise
    return end


def _step(t: Training, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int, rank: int) -> torch.Tensor:
    """One step's forward and backward (the optimizer step is the caller's); the detached loss."""
    seed = mix_seed(SEED_STEP, t.cfg.seed, epoch, step, rank)
    torch.manual_seed(seed)  # dropout
    mixer = BatchMixer(t.cfg.mix_prob, t.cfg.mixup_share, t.cfg.mixup_alpha, t.cfg.cutmix_alpha, seed=seed)
    if t.cfg.compile:
        mark_step()
    return forward_backward(t.train_model, images, targets, mixer, t.scaler, t.compute, t.cfg.label_smoothing)


def _read(unread: torch.Tensor, images: int, first: int, step: int, epoch: int, late: bool, totals: dict[str, Any],
          control: EpochControl, env: DistEnv) -> EpochEnd:
    """Read the loss summed since step ``first`` (across processes, with each one's request to stop and
    lack of time: clocks differ, all must stop at the same step) into ``totals``; raise if it is not finite."""
    loss_sum, count, signalled, late_anywhere = env.all_reduce_sum(torch.tensor(
        [float(unread), images, float(control.stop["signal"]), float(late)], dtype=torch.float64)).tolist()
    if not np.isfinite(loss_sum):
        steps = f"step {step}" if first == step else f"steps {first}..{step}"
        raise NonFiniteLossError(f"the training loss became {loss_sum / count} at epoch {epoch + 1} {steps}; the "
                                 "weights were not updated with it")
    totals["loss_sum"] += loss_sum
    totals["images"] += int(count)
    # Every process acts on the reduced flag, so all stop at the same step even if only one was signalled.
    signal_seen = int(control.stop["signal"]) or (int(signal.SIGTERM) if signalled else 0)
    return EpochEnd(step, signal_seen, late_anywhere > 0)


def compile_failure(error: Exception) -> bool:
    """Whether ``error`` came from torch.compile (e.g. no C++ compiler, or no Triton for the GPU)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return isinstance(error, (TorchDynamoException, InductorError))


def compile_error(error: Exception) -> RunError:
    """The clear error for a torch.compile failure: what failed, and to train without it."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return RunError(f"torch.compile failed ({type(error).__name__}: {first_line[:300]}); train without it: add "
                    "--no-compile (same results, slower)")
