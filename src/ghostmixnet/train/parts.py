"""A training run's parts, built once from its config, and the batches they train on.

The run (:mod:`~ghostmixnet.train.run`) and the throughput benchmark (:mod:`~ghostmixnet.train.throughput`)
both build their parts here and train with :func:`~ghostmixnet.train.loop.train_one_epoch`, so that what
the benchmark times is what a run trains with: the model (compiled and wrapped for several processes as
the config and device say), the optimizer, the schedule, the gradient scaler, the weight average, the
augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data.augment import BatchPipeline, augment_in_chunks, resolve_augment_chunk, train_transform
from ..data.cifar import ArraySet
from ..data.loading import SEED_BATCH_AUGMENT, DeviceBatches, ImageDataset, ResumableSampler, mix_seed
from ..data.resolution import ResolutionSchedule, resize_batch
from ..device import Compute, prepare_device
from ..errors import RunError
from ..model.architectures import zero_init_residuals
from ..model.depthwise import set_depthwise
from ..model.factory import build_model, load_pretrained
from ..model.fused_bn import set_fused_bn
from .compile import compile_model
from .distill import Distiller
from .optim import build_optimizer
from .schedule import build_scheduler
from .step_graph import StepRunner, build_step_runner


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
    steps_per_epoch: int = 1
    compile_later: bool = False
    """``compile="auto"`` on a CPU: ``train_model`` starts eager, compiled where it pays (:mod:`.compile_auto`)."""
    distiller: Distiller | None = None
    """The cached teacher outputs of a distilled run (:mod:`.distill`), set once the training data is on the device."""
    stepper: StepRunner | None = None
    """The step compiled as one graph (``step_graph`` ``loss`` or ``whole``, :mod:`.step_graph`); None: the
    model alone compiled, the loop's default step."""

    def planned_steps(self) -> int:
        """The run's steps in all: the one-cycle schedule's length (which a time budget may re-plan as the run
        goes, :meth:`replan`), else the config's epochs of steps."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            return int(self.scheduler.lr_lambdas[0].total_steps)
        return self.cfg.epochs * self.steps_per_epoch

    def replan(self, total_steps: int, done: int) -> None:
        """Stretch or shrink the one-cycle schedule to ``total_steps`` after ``done`` steps (kept in the
        scheduler's state, so a resumed run continues the re-planned schedule)."""
        for factor in self.scheduler.lr_lambdas:
            factor.resize(total_steps, done)
        # LambdaLR applies a factor at its next step(); the current step's rate follows the new plan now.
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas):
            rate = float(base) * factor(self.scheduler.last_epoch)
            if isinstance(group["lr"], torch.Tensor):  # a captured step reads it where it is (step_graph.py)
                group["lr"].fill_(rate)
            else:
                group["lr"] = rate


def build_training(cfg: TrainConfig, device: torch.device, steps_per_epoch: int,
                   distributed: bool = False, echo: Callable[[str], None] | None = None) -> Training:
    """The parts of a run of ``cfg`` on ``device`` (seeded by ``cfg.seed``), with ``steps_per_epoch`` for
    schedules stepped per step; ``distributed`` wraps the model in DistributedDataParallel. ``echo`` is told
    in one line what a start from trained weights (``cfg.init``) kept."""
    prepare_device(device)
    compute = Compute.resolve(device, cfg.precision, cfg.channels_last)
    torch.manual_seed(cfg.seed)
    model = set_fused_bn(build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout,
                                       image_size=cfg.image_size), cfg.fused_bn).to(device)
    set_depthwise(model, cfg.depthwise)
    if cfg.zero_init_residual:
        zero_init_residuals(model)
    if cfg.init is not None:
        load_pretrained(model, cfg.model, cfg.init, echo=echo, classes=cfg.class_names)
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
        if cfg.freeze_epochs:  # DDP waits for a gradient of every parameter it was built with
            raise RunError("--freeze-epochs runs in one process (DistributedDataParallel needs every layer's "
                           "gradient at every step); run it without torchrun, or drop --freeze-epochs")
        if cfg.sync_bn:
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    # compile="auto" on one CPU starts eager and is decided after the first timed steps (compile_auto.py).
    later = cfg.compile == "auto" and device.type == "cpu" and not distributed
    if distributed and cfg.step_graph != "model":
        raise RunError(f"--step-graph {cfg.step_graph} runs in one process (it compiles the model unwrapped); run it "
                       "without torchrun, or use --step-graph model")
    stepper = build_step_runner(cfg.step_graph, model, optimizer, scaler, compute, cfg.label_smoothing,
                                bool(cfg.compile), cfg.compile_mode, distributed)
    if cfg.compile and not later and stepper is None:
        train_model = compile_model(train_model, cfg.compile_mode, device, distributed)
    pipeline = (BatchPipeline(cfg.augment, compile=bool(cfg.compile) and not later, degrade=cfg.degrade)
                if cfg.augment_backend == "batched" else None)
    return Training(cfg, compute, model, train_model, optimizer, scheduler, per_step_schedule, scaler, ema, pipeline,
                    resolve_augment_chunk(cfg.augment_chunk, device), steps_per_epoch, later, stepper=stepper)


def build_loader(t: Training, data: ArraySet, sampler: ResumableSampler,
                 batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Raw batches in ``sampler``'s order: uint8 batches gathered on the device from the training set held
    there (batched augmentation), or augmented batches from DataLoader workers (``torchvision``)."""
    if t.pipeline is not None:
        return DeviceBatches(data, sampler, batch_size, t.compute.device)
    transform = train_transform(t.cfg.augment, *t.cfg.normalization, size=t.cfg.image_size)
    return DataLoader(ImageDataset(data, transform), batch_size=batch_size, sampler=sampler,
                      num_workers=t.cfg.num_workers, pin_memory=t.compute.device.type == "cuda")


def epoch_batches(t: Training, loader: Iterable[Any], epoch: int, first_step: int, rank: int = 0,
                  mark: Callable[[str], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalized training batches of ``epoch`` from ``loader``, whose first is step ``first_step``: the
    loader's own with ``torchvision``; augmented on the device, a chunk at a time, with batched augmentation
    (step s of the epoch draws from its own generator: a function of the seed, epoch, step and rank)."""
    if t.distiller is not None:  # cached views: the config refuses resizing, so nothing else applies
        return t.distiller.batches(loader, t.pipeline, epoch, *t.cfg.normalization)
    if t.pipeline is None:
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(loader)
    else:
        def draws(i: int) -> torch.Generator:
            return torch.Generator().manual_seed(mix_seed(SEED_BATCH_AUGMENT, t.cfg.seed, epoch, first_step + i, rank))

        batches = augment_in_chunks(loader, t.pipeline, t.augment_chunk, draws, *t.cfg.normalization, mark)
    sizes = ResolutionSchedule.parse(t.cfg.resolutions)
    return resized(batches, sizes, t, epoch * t.steps_per_epoch + first_step - 1) if sizes.stages else batches


def resized(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], sizes: ResolutionSchedule, t: Training,
            first: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` at the sizes ``sizes`` gives their steps (the first is the run's 0-based step ``first``), read
    against the run's planned steps as each batch comes (a time budget re-plans them as the run goes)."""
    for i, (images, targets) in enumerate(batches):
        yield resize_batch(images, sizes.size_at(first + i, t.planned_steps())), targets
