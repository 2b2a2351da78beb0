"""Training throughput of a configuration, end to end: loading, augmentation, mixing, forward, backward, step.

Used by the benchmarks (``benchmarks/train_throughput.py`` compares the reference configuration with
the fast path; ``benchmarks/time_to_accuracy.py`` sizes a run to a time budget). It runs the same
per-step code as the trainer, without checkpoints or validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .augment import train_transform
from .batch_augment import BatchPipeline, normalize
from .config import TrainConfig
from .data import MEAN, STD, ArraySet, ImageDataset, ResumableSampler
from .engine import forward_backward, optimizer_step, resolve_precision
from .mix import BatchMixer
from .models import build_model, set_fused_bn


@dataclass(frozen=True)
class Throughput:
    """One measurement."""

    images_per_s: float
    """Training images per second over the timed steps."""
    warmup_seconds: float
    """Wall time of the untimed first steps (with ``compile``, mostly compilation)."""
    precision: str
    """The precision ``auto`` resolved to."""


def training_throughput(cfg: TrainConfig, data: ArraySet, steps: int, warmup: int = 3,
                        device: torch.device | None = None) -> Throughput:
    """Train ``cfg``'s model on ``data`` for ``warmup`` untimed then ``steps`` timed steps of ``cfg.batch_size``.

    ``data`` needs at least ``(warmup + steps) * batch_size`` images; the partial batch is dropped.
    """
    if len(data) < (warmup + steps) * cfg.batch_size:
        raise ValueError(f"{(warmup + steps) * cfg.batch_size} images are needed, {len(data)} given")
    device = device or torch.device("cpu")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = set_fused_bn(build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout), cfg.fused_bn).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    runner = torch.compile(model) if cfg.compile else model
    batched = BatchPipeline(cfg.augment, compile=cfg.compile) if cfg.augment_backend == "batched" else None
    dataset = ImageDataset(data, None if batched else train_transform(cfg.augment))
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    sampler.set_epoch(0)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    mixer = BatchMixer(cfg.mix_prob, cfg.mixup_share, cfg.mixup_alpha, cfg.cutmix_alpha, seed=cfg.seed)
    runner.train()
    began, seen, start = time.perf_counter(), 0, time.perf_counter()
    warmup_seconds = 0.0
    for step, (images, targets) in enumerate(loader):
        if step == warmup:
            seen, start = 0, time.perf_counter()
            warmup_seconds = start - began
        if batched is not None:
            images = normalize(batched(images.to(device), generator), MEAN, STD)
        forward_backward(runner, images, targets, mixer, scaler, device, precision, cfg.label_smoothing,
                         cfg.channels_last)
        optimizer_step(optimizer, scaler)
        seen += images.shape[0]
        if step + 1 == warmup + steps:
            break
    return Throughput(seen / (time.perf_counter() - start), warmup_seconds, precision)
