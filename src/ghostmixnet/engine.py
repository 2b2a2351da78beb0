"""Computing with a model: where and in what precision (:class:`Compute`), one training step's forward,
backward and optimizer step, evaluation and batched inference on uint8 images, and the progress display.
The epoch loop that strings the steps together is ``training.train_one_epoch``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import MEAN, STD
from .mix import BatchMixer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but PyTorch sees no CUDA GPU here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for but Apple MPS is not available here; use --device cpu")
    return device


def native_cpu_support(precision: str) -> bool | None:
    """Whether this CPU computes ``precision`` (bf16/fp16) natively (AVX512-BF16, AMX, ...); None if unknown."""
    try:
        check = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported, "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}
        return bool(check[precision]())
    except (AttributeError, RuntimeError):  # a private probe: it may be gone in another release
        return None


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes the fastest precision the device computes natively: bf16 on CUDA GPUs that have it
    (fp16 with a gradient scaler on older ones), bf16 on CPUs with native bf16, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and native_cpu_support("bf16"):
        return "bf16"
    return "fp32"


def prepare_device(device: torch.device) -> None:
    """Process-wide switches of the fast path on ``device``: on CUDA, cuDNN times its convolution algorithms
    once per shape and keeps the fastest (a training run's shapes are fixed, so the search pays off)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


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


def resolve_compile_mode(mode: str, device: torch.device, distributed: bool = False) -> str:
    """``auto`` becomes ``reduce-overhead`` (CUDA graphs) for a single process on a CUDA GPU, else ``default``."""
    if mode != "auto":
        return mode
    return "reduce-overhead" if device.type == "cuda" and not distributed else "default"


CPU_SIMD_BITS = 256
"""Vector width of the CPU code torch.compile generates. Its 512-bit (AVX-512) kernels compute non-finite
gradients for the Ghost module under bf16 autocast (torch 2.14.1: a NaN loss from the second step on;
``tests/test_engine.py`` pins it); its 256-bit ones are correct. Convolutions run in oneDNN either way."""


def compile_model(model: nn.Module, mode: str, device: torch.device, distributed: bool = False) -> nn.Module:
    """``torch.compile`` in ``mode`` (:attr:`TrainConfig.compile_mode`, ``auto`` resolved for ``device``). Call
    :func:`mark_step` before each training step: with CUDA graphs, it tells the replayed graphs that the
    last step's outputs are done with. On the CPU the generated code is held to :data:`CPU_SIMD_BITS`."""
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        inductor_config.cpp.simdlen = CPU_SIMD_BITS
    mode = resolve_compile_mode(mode, device, distributed)
    return torch.compile(model, mode=None if mode == "default" else mode)


def mark_step() -> None:
    """A new training step begins (needed by compiled models that replay CUDA graphs; harmless otherwise)."""
    torch.compiler.cudagraph_mark_step_begin()


def slow_precision_warning(device: torch.device, precision: str) -> str | None:
    """A warning when autocast on this CPU would be emulated (no AVX512-BF16/AMX or FP16 units): often 10x slower."""
    if device.type != "cpu" or precision not in AUTOCAST_DTYPES or native_cpu_support(precision) is not False:
        return None
    return (f"warning: this CPU has no native {precision} support (capability "
            f"{torch.backends.cpu.get_cpu_capability()}), so {precision} autocast is emulated and usually far "
            "slower than fp32; consider --precision fp32")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (bf16/fp16, resolved: not ``auto``) on ``device``, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


@dataclass(frozen=True)
class Compute:
    """Where and in what arithmetic a model runs, resolved once and passed along: the device, the
    precision (never ``auto``) and the memory format."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto", channels_last: bool = False) -> Compute:
        """``precision`` ``auto`` becomes what ``device`` computes natively (:func:`resolve_precision`)."""
        return cls(device, resolve_precision(precision, device), channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this precision on this device."""
        return autocast(self.device, self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def normalize_uint8(images: np.ndarray | torch.Tensor, device: torch.device,
                    channels_last: bool = False) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 to normalized float (N, 3, 32, 32): the same arithmetic as ToTensor + Normalize."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class Progress:
    """A tqdm bar on an interactive terminal; otherwise a plain line every ``every`` steps."""

    def __init__(self, total: int, desc: str, log: Callable[[str], None], every: int = 50,
                 enabled: bool = True) -> None:
        self.total, self.desc, self.log, self.every, self.enabled = total, desc, log, every, enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, step: int, **stats: float) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in stats.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif step % self.every == 0 or step == self.total:
            self.log(f"{self.desc} step {step}/{self.total} {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def forward_backward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, mixer: BatchMixer,
                     scaler: torch.amp.GradScaler, compute: Compute, label_smoothing: float) -> torch.Tensor:
    """Mix the batch, forward under autocast, backward; returns the detached loss.

    The optimizer step is left to the caller (:func:`optimizer_step`), which keeps a non-finite loss
    from the weights.
    """
    images = images.to(compute.device, non_blocking=True).contiguous(memory_format=compute.memory_format)
    targets = targets.to(compute.device, non_blocking=True)
    batch = mixer(images, targets)
    with compute.autocast():
        logits = model(batch.images)
    loss = batch.loss(logits.float(), label_smoothing)
    scaler.scale(loss).backward()
    return loss.detach()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   loss: torch.Tensor | None = None) -> None:
    """Apply the accumulated gradients (unscaled by the gradient scaler) and clear them.

    With a fused optimizer and ``loss`` given, the update is skipped on the device when ``loss`` is not
    finite (weights, moments and step count stay as they were), so a loop may read the loss on the host
    only now and then and still never let a non-finite loss reach the weights. The gradient scaler, when
    enabled, does the same through the non-finite gradients such a loss leaves.
    """
    guard = loss is not None and not scaler.is_enabled() and bool(optimizer.defaults.get("fused"))
    if guard:
        # Fused optimizers read these two attributes (set by GradScaler for fp16): a nonzero found_inf
        # turns the step into a no-op inside the kernel.
        optimizer.found_inf = (~torch.isfinite(loss)).float()
        optimizer.grad_scale = None
    try:
        scaler.step(optimizer)
    finally:
        if guard:
            del optimizer.found_inf, optimizer.grad_scale
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def iterate_arrays(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


def as_compute(compute: Compute | torch.device) -> Compute:
    """A :class:`Compute`; a bare device means fp32 on it."""
    return compute if isinstance(compute, Compute) else Compute(torch.device(compute))


def tta_views(x: torch.Tensor, shift: int = 0) -> list[torch.Tensor]:
    """Test-time views of a normalized batch: it and its mirror, and with ``shift`` also both shifted by
    ``shift`` pixels down-right and up-left (the edge reflected in), six views in all."""
    views = [x]
    if shift:
        _, _, h, w = x.shape
        padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        views += [padded[..., dy:dy + h, dx:dx + w] for dy, dx in ((0, 0), (2 * shift, 2 * shift))]
    return views + [v.flip(3) for v in views]


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, compute: Compute | torch.device, batch_size: int = 256,
                   tta: bool = False, tta_shift: int = 0) -> torch.Tensor:
    """Logits (float32, on the CPU) for (N, 32, 32, 3) uint8 images, in batches, where and in what precision
    ``compute`` says (a bare device: fp32); with ``tta`` the mean of the logits of the views of
    :func:`tta_views` (each image and its mirror; with ``tta_shift``, shifted copies too)."""
    compute = as_compute(compute)
    model.eval()
    outputs = []
    for chunk in iterate_arrays(images, batch_size):
        with compute.autocast():
            x = normalize_uint8(chunk, compute.device, compute.channels_last)
            views = tta_views(x, tta_shift) if tta else [x]
            logits = sum(model(v.contiguous(memory_format=compute.memory_format)).float() for v in views) / len(views)
            outputs.append(logits.cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


@dataclass
class EvalResult:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted) of one evaluation."""

    loss: float
    accuracy: float
    confusion: np.ndarray

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1)


class Shard(Protocol):
    """This process's share of an evaluation among several (a :class:`~ghostmixnet.distributed.DistEnv`)."""

    rank: int
    world_size: int

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor: ...


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, compute: Compute | torch.device,
             batch_size: int = 256, tta: bool = False, shard: Shard | None = None, tta_shift: int = 0) -> EvalResult:
    """Plain cross-entropy loss, top-1 accuracy and confusion matrix over a labelled uint8 set.

    ``tta`` averages each image's logits over its test-time views (:func:`tta_views`, ``tta_shift``). With a
    ``shard`` of several processes each evaluates every ``world_size``-th image from its ``rank`` and the loss
    sums and confusion matrices are summed across processes, weighted by count.
    """
    rank, world_size = (shard.rank, shard.world_size) if shard is not None else (0, 1)
    logits = predict_logits(model, images[rank::world_size], compute, batch_size, tta, tta_shift)
    targets = torch.as_tensor(labels[rank::world_size]).long()
    num_classes = logits.shape[1] if logits.numel() else int(np.max(labels)) + 1
    loss_sum = F.cross_entropy(logits, targets, reduction="sum").item() if logits.numel() else 0.0
    preds = logits.argmax(1) if logits.numel() else targets
    confusion = torch.bincount(targets * num_classes + preds, minlength=num_classes ** 2).double()
    totals = torch.cat([confusion, torch.tensor([loss_sum], dtype=torch.float64)])
    if shard is not None:
        totals = shard.all_reduce_sum(totals)
    confusion = totals[:-1].round().long().view(num_classes, num_classes).numpy()
    count = max(int(confusion.sum()), 1)
    return EvalResult(float(totals[-1]) / count, float(np.trace(confusion)) / count, confusion)
