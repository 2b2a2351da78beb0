"""What a device needs to know before it takes the model: the file it would ship in each format."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..files import to_stderr
from ..model.architectures import IMAGE_SIZE, build_architecture, count_parameters
from ..model.budgets import budget_lines
from ..model.cost import total_macs
from ..model.weights import write_weights
from .bench import format_bench, run_bench
from .export import export_onnx
from .micro import arena_bytes, export_tflite
from .pte import export_pte
from .quantize import quantize_onnx
from .runtimes import installed, missing_reason


def file_sizes(model: nn.Module, cfg: TrainConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Bytes of ``model`` in each format this machine can write: fp16 safetensors, ONNX fp32 and int8,
    ExecuTorch fp32 and int8 (the int8 ones calibrated on random images: the size does not depend on them).
    A format whose runtime is not installed is logged, naming its extra, and left out."""
    sizes: dict[str, int] = {}
    random_images = np.random.default_rng(0).integers(0, 256, (16, cfg.image_size, cfg.image_size, 3),
                                                           dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes["safetensors fp16"] = write_weights(model.state_dict(), cfg.to_dict(), folder, "m", {}).stat().st_size
        if installed("onnxruntime"):
            float_path = export_onnx(model, cfg, folder / "m.onnx")
            sizes["ONNX fp32"] = float_path.stat().st_size
            sizes["ONNX int8"] = quantize_onnx(float_path, folder / "q.onnx", random_images).stat().st_size
        else:
            log(f"no ONNX sizes: {missing_reason('onnxruntime')}")
        if installed("executorch"):
            calibration = torch.randn(16, 3, cfg.image_size, cfg.image_size)
            sizes["ExecuTorch fp32"] = export_pte(model, cfg, folder / "m.pte").stat().st_size
            sizes["ExecuTorch int8"] = export_pte(model, cfg, folder / "q.pte", calibration=calibration).stat().st_size
        else:
            log(f"no ExecuTorch sizes: {missing_reason('executorch')}")
        if installed("litert-torch") and installed("tflite-micro"):
            calibration = torch.randn(16, 3, cfg.image_size, cfg.image_size)
            path = export_tflite(model, cfg, folder / "m.tflite", calibration)
            sizes["TFLite Micro int8"] = path.stat().st_size
            sizes["TFLite Micro arena"] = arena_bytes(path, size=cfg.image_size)
        else:
            log(f"no TFLite Micro size: {missing_reason('litert-torch')}")  # one extra installs both
    return sizes


def describe_deployment(name: str, width: float = 1.0, num_classes: int = 10, image_size: int = IMAGE_SIZE) -> str:
    """What ``ghostmixnet info --deploy`` adds: the file sizes and a short latency table (batch 1 at one
    thread and at all of them, throughput at batch 64) of every installed runtime, for random weights."""
    cfg = TrainConfig(model=name, width=width, num_classes=num_classes, image_size=image_size,
                      dataset="cifar10" if image_size == IMAGE_SIZE else "folder",
                      classes=None if num_classes == 10 else tuple(f"class{i}" for i in range(num_classes)))
    model = build_architecture(name, num_classes=num_classes, width=width, image_size=image_size).eval()
    sizes = file_sizes(model, cfg, log=to_stderr)
    arena = sizes.pop("TFLite Micro arena", None)
    lines = ["", "file size per format: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items())]
    if arena is not None:  # measured in TFLite Micro: these decide the budgets
        macs = total_macs(model)
        lines += ["measured in TFLite Micro:", *budget_lines(count_parameters(model), macs, sizes["TFLite Micro int8"],
                                                              arena, measured=True)]
    threads = tuple(sorted({1, torch.get_num_threads()}))
    rows, info = run_bench((model, cfg), batch_size=64, threads=threads, repeats=20, warmup=3, log=to_stderr)
    return "\n".join(lines + ["", format_bench(rows, info)])
