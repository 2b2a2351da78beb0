"""What a run will need in memory, estimated before anything is allocated, against what the machine has.

A model of the wrong width (``--width 20`` on a laptop) would otherwise grow for minutes and die with an
allocator's error. The estimate needs no memory: the model is built on PyTorch's meta device and one
image is passed through it there, counting every layer's output.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig

try:
    import resource
except ImportError:  # Windows: no process limits to read
    resource = None
from ..errors import RunError
from ..model.architectures import IMAGE_SIZE, build_architecture

GB = 1e9


def activation_elements(model: nn.Module) -> int:
    """Elements every leaf layer outputs for one image (on the meta device: nothing is allocated): about what
    backpropagation keeps per image."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() if isinstance(output, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            size = getattr(model, "image_size", IMAGE_SIZE)
            model(torch.empty(1, 3, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def estimate_bytes(cfg: TrainConfig, batch_per_process: int, train_images: int) -> int:
    """Bytes a training process of ``cfg`` needs, roughly: weights, gradients and the optimizer's state (and
    the weight average), every layer's output for a batch in float32, and the uint8 training set held on the
    device by batched augmentation. For the paper's model at batch 128 in fp32 on the CPU it says 2.7 GB; three
    such steps (:func:`~ghostmixnet.train.throughput.training_throughput`, 2-core CPU, 2026-12-01) raised a
    process's peak resident memory from 0.7 to 3.2 GB."""
    with torch.device("meta"):
        model = build_architecture(cfg.model, cfg.num_classes, cfg.width, cfg.dropout, cfg.image_size)
    parameters = sum(p.numel() for p in model.parameters())
    per_parameter = 4 * (3 + (2 if cfg.optimizer == "adamw" else 1) + (1 if cfg.ema_decay else 0))
    activations = 4 * activation_elements(model.train()) * batch_per_process
    data = train_images * 3 * cfg.image_size ** 2 if cfg.augment_backend == "batched" else 0
    return parameters * per_parameter + activations + data


def available_bytes(device: torch.device) -> int | None:
    """Memory this process may still take on ``device``: the GPU's free memory, or on a CPU the system's
    available memory within the process's own data limit; None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    free = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        free = int(fields.get("MemAvailable", "0 kB").split()[0]) * 1024 or None
    if resource is None:
        return free
    limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
    return free if limit == resource.RLIM_INFINITY else min(free or limit, limit)


def check_fits_memory(cfg: TrainConfig, batch_per_process: int, train_images: int, device: torch.device) -> None:
    """Refuse a run that cannot fit in ``device``'s memory, with both figures and what to change."""
    need, have = estimate_bytes(cfg, batch_per_process, train_images), available_bytes(device)
    if have is not None and need > have:
        raise RunError(f"this run needs about {need / GB:.1f} GB on {device} ({cfg.model} at width {cfg.width:g}, "
                       f"batch {batch_per_process} per process) but {have / GB:.1f} GB is available; lower --width "
                       "or --batch-size, or train on a machine with more memory")


