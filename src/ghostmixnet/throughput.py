"""Training throughput of a configuration, end to end: loading, augmentation, mixing, forward, backward, step.

Used by the benchmarks (``benchmarks/train_throughput.py`` compares the reference configuration with
the fast path, ``benchmarks/time_to_accuracy.py`` sizes a run to a time budget, ``benchmarks/gpu_check.py``
also asks where a step's time goes). It runs the trainer's per-step code on the trainer's parts (resident
batches for batched augmentation, the same optimizer, compile mode and device switches), without
checkpoints, validation or reading the loss.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from .augment import train_transform
from .batch_augment import BatchPipeline, augment_in_chunks, resolve_augment_chunk
from .config import TrainConfig
from .data import MEAN, SEED_BATCH_AUGMENT, STD, ArraySet, DeviceBatches, ImageDataset, ResumableSampler, mix_seed
from .engine import (
    build_optimizer,
    compile_model,
    forward_backward,
    mark_step,
    optimizer_step,
    prepare_device,
    resolve_precision,
)
from .mix import BatchMixer
from .models import build_model, set_fused_bn

PHASES = ("data", "augment", "forward_backward", "optimizer")
"""The parts of a training step :class:`StepPhases` times: getting the batch, per-image augmentation, mixing
with forward and backward, and the optimizer step."""


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (GPU work runs behind the host: a clock read must wait for it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepPhases:
    """Where a training step's time goes: host time between marks and, on CUDA, device time between events
    recorded at the same marks (the GPU's own timeline: its idle gaps count towards the phase that follows).
    On the CPU the two are the same clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.host: dict[str, float] = defaultdict(float)
        self.pairs: list[tuple[str, Any, Any]] = []
        self.steps = 0

    def _event(self) -> Any:
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def begin(self) -> None:
        """Start a step."""
        self.steps += 1
        self._clock, self._last = time.perf_counter(), self._event()

    def mark(self, phase: str) -> None:
        """``phase`` ends here."""
        now, event = time.perf_counter(), self._event()
        self.host[phase] += now - self._clock
        self.pairs.append((phase, self._last, event))
        self._clock, self._last = now, event

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase: milliseconds per step on the host and on the device."""
        synchronize(self.device)
        device: dict[str, float] = defaultdict(float)
        for phase, start, end in self.pairs:
            device[phase] += start.elapsed_time(end) / 1000 if start is not None else 0.0
        if self.device.type != "cuda":
            device = self.host
        steps = max(self.steps, 1)
        return {p: {"host_ms": 1000 * self.host[p] / steps, "device_ms": 1000 * device[p] / steps}
                for p in PHASES if p in self.host}


@dataclass(frozen=True)
class Throughput:
    """One measurement."""

    images_per_s: float
    """Training images per second over the timed steps."""
    warmup_seconds: float
    """Wall time of the untimed first steps (with ``compile``, mostly compilation)."""
    precision: str
    """The precision ``auto`` resolved to."""
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    """With ``phase_steps``: milliseconds per step of each of :data:`PHASES`, on the host and the device."""


def training_throughput(cfg: TrainConfig, data: ArraySet, steps: int, warmup: int = 3,
                        device: torch.device | None = None, phase_steps: int = 0) -> Throughput:
    """Train ``cfg``'s model on ``data`` for ``warmup`` untimed then ``steps`` timed steps of ``cfg.batch_size``;
    then, with ``phase_steps``, that many more steps timed phase by phase (:class:`StepPhases`).

    With batched augmentation in chunks of several batches (:attr:`TrainConfig.augment_chunk`), each of the
    three counts is rounded up to whole chunks, so that every timed stretch carries its share of augmentation.
    ``data`` needs at least ``(warmup + steps + phase_steps) * batch_size`` images (after rounding); the partial
    batch is dropped.
    """
    device = device or torch.device("cpu")
    chunk = resolve_augment_chunk(cfg.augment_chunk, device) if cfg.augment_backend == "batched" else 1
    warmup, steps, phase_steps = (-(-count // chunk) * chunk for count in (warmup, steps, phase_steps))
    total = warmup + steps + phase_steps
    if len(data) < total * cfg.batch_size:
        raise ValueError(f"{total * cfg.batch_size} images are needed, {len(data)} given")
    prepare_device(device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = set_fused_bn(build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout), cfg.fused_bn).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    runner = compile_model(model, cfg.compile_mode, device) if cfg.compile else model
    batched = BatchPipeline(cfg.augment, compile=cfg.compile) if cfg.augment_backend == "batched" else None
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    sampler.set_epoch(0)
    if batched is not None:
        loader: Any = DeviceBatches(data, sampler, cfg.batch_size, device)
    else:
        loader = DataLoader(ImageDataset(data, train_transform(cfg.augment)), batch_size=cfg.batch_size,
                            sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
                            pin_memory=device.type == "cuda")
    runner.train()
    phases = StepPhases(device)  # marks count only after its first begin(), in the last phase_steps steps
    if batched is not None:
        draws = lambda i: torch.Generator().manual_seed(mix_seed(SEED_BATCH_AUGMENT, cfg.seed, 0, i, 0))  # noqa: E731
        mark = lambda phase: phases.mark(phase) if phases.steps else None  # noqa: E731
        loader = augment_in_chunks(loader, batched, chunk, draws, MEAN, STD, mark)
    batches = iter(loader)
    began = time.perf_counter()
    start, warmup_seconds, seconds, timing = began, 0.0, 0.0, False
    for step in range(total):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
            warmup_seconds = start - began
        if step == warmup + steps:
            synchronize(device)
            seconds = time.perf_counter() - start
            timing = True
        if timing:
            phases.begin()
        images, targets = next(batches)  # with batched augmentation, its chunk's marks come from in here
        if timing and batched is None:
            phases.mark("data")
        if cfg.compile:
            mark_step()
        mixer = BatchMixer(cfg.mix_prob, cfg.mixup_share, cfg.mixup_alpha, cfg.cutmix_alpha, seed=step)
        loss = forward_backward(runner, images, targets, mixer, scaler, device, precision, cfg.label_smoothing,
                                cfg.channels_last)
        if timing:
            phases.mark("forward_backward")
        optimizer_step(optimizer, scaler, loss)
        if timing:
            phases.mark("optimizer")
    if not timing:
        synchronize(device)
        seconds = time.perf_counter() - start
    return Throughput(steps * cfg.batch_size / seconds, warmup_seconds, precision,
                      phases.summary() if timing else {})
