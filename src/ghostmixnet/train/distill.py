"""Distillation from a teacher whose outputs are computed once per augmented view and kept.

A teacher forward pass at every step would cost the shipped model's 444M multiply-adds per image each time, 47
times a microcontroller member's own. Instead every training image gets ``distill_views`` fixed augmented views
(their parameters drawn once, from seeds of the view and the data split, so runs of any seed share them), the
teacher scores each view once, and the scores are written to a cache file named after everything they depend on:
the teacher file, the training images, the augmentation, the views and the teacher's input normalisation. Epoch
``e`` trains on view ``e mod K`` of every image, in the epoch's shuffled order, with the cached scores as soft
targets; a resumed run, and a run of another seed, read the same file.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from ..config import TrainConfig
from ..data.augment import BatchPipeline, select_params
from ..data.batch_ops import normalize
from ..data.cifar import ArraySet
from ..data.loading import SEED_DISTILL_VIEW, DeviceBatches, mix_seed
from ..device import Compute
from ..files import atomic_open
from ..files import cache_dir as files_cache_dir
from ..infer.load import model_from_checkpoint
from ..model.checkpoint import resolve_checkpoint
from ..model.weights import sha256_of

TEACHER_BATCH = 256
"""Images the teacher scores at once while the cache is built."""


def cache_dir() -> Path:
    """Where teacher caches are kept: ``$GHOSTMIXNET_CACHE``, else ``~/.cache/ghostmixnet``."""
    return files_cache_dir("teacher")


def view_params(pipeline: BatchPipeline, n: int, views: int, split_seed: int) -> list[dict[str, Any]]:
    """The augmentation parameters of ``views`` views of each of ``n`` images (view ``k`` of image ``i`` is row
    ``i`` of entry ``k``), drawn from seeds of the view and the split alone."""
    return [pipeline.sample(n, torch.Generator().manual_seed(mix_seed(SEED_DISTILL_VIEW, split_seed, k)))
            for k in range(views)]


def distillation_loss(logits: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor, alpha: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``alpha`` times the KL divergence from the teacher's softened distribution to the student's (scaled by
    the temperature squared, which keeps its gradients' size independent of the temperature, Hinton et al.
    2015), plus ``1 - alpha`` times cross-entropy with the labels."""
    soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    if alpha == 1.0:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


@dataclass
class Distiller:
    """The cached teacher outputs of a run and the views they belong to."""

    views: list[dict[str, Any]]
    """Per view, the augmentation parameters of every training image (:func:`view_params`)."""
    logits: torch.Tensor
    """(views, images, classes) teacher logits, float16, on the training device."""
    alpha: float
    temperature: float

    def batches(self, loader: DeviceBatches, pipeline: BatchPipeline, epoch: int, mean: tuple[float, ...],
                std: tuple[float, ...]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(normalized images, labels, teacher logits) of ``epoch``'s batches: view ``epoch mod K`` of each."""
        view = epoch % len(self.views)
        for rows, images, labels in loader.with_rows():
            augmented = pipeline.apply(images, select_params(self.views[view], rows.cpu()))
            yield normalize(augmented, mean, std), labels, self.logits[view, rows].float()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor,
             label_smoothing: float) -> torch.Tensor:
        return distillation_loss(logits, targets, teacher, self.alpha, self.temperature, label_smoothing)


def cache_key(teacher_file: Path, data: ArraySet, cfg: TrainConfig, teacher_cfg: TrainConfig) -> str:
    """The hex digest of everything the cached outputs depend on."""
    digest = hashlib.sha256()
    digest.update(sha256_of(teacher_file).encode())
    digest.update(data.images.tobytes())
    digest.update(json.dumps([cfg.augment, cfg.distill_views, cfg.split_seed,
                              [list(v) for v in teacher_cfg.normalization]]).encode())
    return digest.hexdigest()


def teacher_logits(teacher: nn.Module, images: torch.Tensor, pipeline: BatchPipeline, views: list[dict[str, Any]],
                   normalization: tuple[tuple[float, ...], tuple[float, ...]], compute: Compute,
                   echo: Callable[[str], None] = print) -> torch.Tensor:
    """The teacher's logits (views, images, classes) in float16 for uint8 ``images`` (N, 3, H, W) on the device."""
    teacher = teacher.to(compute.device).eval()
    out = []
    with torch.no_grad():
        for k, params in enumerate(views):
            started, scores = time.perf_counter(), []
            for start in range(0, len(images), TEACHER_BATCH):
                rows = torch.arange(start, min(start + TEACHER_BATCH, len(images)))
                x = normalize(pipeline.apply(images[rows.to(images.device)], select_params(params, rows)),
                              *normalization)
                with compute.autocast():
                    scores.append(teacher(x).half())
            out.append(torch.cat(scores))
            echo(f"distillation: teacher scored view {k + 1}/{len(views)} of {len(images):,} images in "
                 f"{time.perf_counter() - started:.0f} s")
    return torch.stack(out)


def prepare_distiller(cfg: TrainConfig, data: ArraySet, images: torch.Tensor, compute: Compute, is_main: bool,
                      barrier: Callable[[], None], echo: Callable[[str], None] = print) -> Distiller | None:
    """The run's :class:`Distiller` (None without ``cfg.distill``): its cache read, or computed and written by
    the main process (the others wait at ``barrier`` and read it). ``images`` is ``data``'s uint8 images on the
    training device."""
    if cfg.distill is None:
        return None
    teacher_file = resolve_checkpoint(Path(cfg.distill))
    teacher, teacher_cfg, _ = model_from_checkpoint(teacher_file)
    if teacher_cfg.num_classes != cfg.num_classes:
        raise ValueError(f"the teacher {teacher_file} has {teacher_cfg.num_classes} classes and this run "
                         f"{cfg.num_classes}; distil from a model of the same classes")
    pipeline = BatchPipeline(cfg.augment)
    views = view_params(pipeline, len(data), cfg.distill_views, cfg.split_seed)
    path = cache_dir() / f"{cache_key(teacher_file, data, cfg, teacher_cfg)[:24]}.safetensors"
    if is_main and not path.is_file():
        echo(f"distillation: scoring {cfg.distill_views} views of each training image with {teacher_file.name}, "
             f"once (cached in {path})")
        logits = teacher_logits(teacher, images, pipeline, views, teacher_cfg.normalization, compute, echo)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            f.write(save({"logits": logits.cpu().contiguous()}, {"teacher": teacher_file.name}))
    elif is_main:
        echo(f"distillation: teacher outputs of {cfg.distill_views} views per image read from {path}")
    barrier()
    logits = load_file(str(path))["logits"].to(compute.device)
    if logits.shape != (cfg.distill_views, len(data), cfg.num_classes):
        raise ValueError(f"{path} holds teacher outputs of shape {tuple(logits.shape)}, not "
                         f"{(cfg.distill_views, len(data), cfg.num_classes)}; delete it to compute it again")
    return Distiller(views, logits, cfg.distill_alpha, cfg.distill_temperature)
