"""The inference runtimes users deploy with, each an optional extra: which are installed, and OpenVINO's
classifier (ONNX Runtime's lives in ``infer/onnx.py``, ExecuTorch's in ``pte.py``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError

RUNTIMES = {
    # runtime: (module to import, the extra that installs it, its name in messages)
    "onnxruntime": ("onnxruntime", "deploy", "ONNX Runtime"),
    "openvino": ("openvino", "openvino", "OpenVINO"),
    "executorch": ("executorch.runtime", "executorch", "ExecuTorch"),
    "litert-torch": ("litert_torch", "micro", "litert-torch (the PyTorch to LiteRT converter)"),
    "tflite-micro": ("tflite_micro", "micro", "TFLite Micro's interpreter"),
}


def installed(runtime: str) -> bool:
    """Whether ``runtime`` (a key of :data:`RUNTIMES`) can be imported here."""
    module = RUNTIMES[runtime][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def missing_reason(runtime: str) -> str:
    """One line: the runtime is not installed, and the extra that installs it."""
    _, extra, name = RUNTIMES[runtime]
    return f"{name} is not installed: pip install 'ghostmixnet[{extra}]'"


def require(runtime: str) -> None:
    """Raise :class:`ExportError` saying which extra to install when ``runtime`` is missing."""
    if not installed(runtime):
        raise ExportError(missing_reason(runtime))


def in_fixed_batches(images: torch.Tensor, batch: int, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``run`` (a program compiled for exactly ``batch`` images) applied to any number of images: in chunks of
    ``batch``, the last one padded with zeros and its padding's outputs dropped."""
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        short = batch - len(chunk)
        if short:
            chunk = torch.cat([chunk, chunk.new_zeros(short, *chunk.shape[1:])])
        outputs.append(run(chunk)[:batch - short])
    return torch.cat(outputs)


class OpenVinoClassifier:
    """An ONNX file (fp32, or int8 in QDQ form, which OpenVINO runs in int8) compiled by OpenVINO for the CPU,
    called like a PyTorch model on normalized (N, 3, S, S) tensors of the graph's :attr:`image_size` S; tuned for
    latency (one stream).

    ``precision`` sets OpenVINO's inference precision for the layers not in int8 (``"f32"``; None: its default,
    which is bf16 on CPUs with native bf16, such as those with AVX512_BF16 or AMX). ``batch`` compiles the model
    for that batch size alone (inputs go through it in chunks, the last one padded): a static shape lets OpenVINO
    plan its kernels and memory ahead, which took the shipped int8 model from 2.98 to 2.09 ms at batch 1
    (docs/deployment.md); None compiles for any batch size, as a service with batches of every size needs."""

    def __init__(self, path: Path, threads: int | None = None, precision: str | None = None,
                 batch: int | None = None) -> None:
        require("openvino")
        import openvino as ov  # optional: the 'openvino' extra

        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises its own exception types for any unreadable file
            raise ExportError(f"{path} is not a model OpenVINO can read: {str(e).splitlines()[0]}") from None
        self.batch = batch
        height = model.input(0).get_partial_shape()[2]  # an exported graph's own size (32 before sizes existed)
        self.image_size = height.get_length() if height.is_static else 32
        model.reshape([batch or -1, 3, self.image_size, self.image_size])
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().float().cpu().contiguous()
        if self.batch is None:
            return self._run(images)
        return in_fixed_batches(images, self.batch, self._run)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.request.infer({0: images.numpy()})[0]))

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features, from a graph exported with its features (a second output)."""
        images = images.detach().float().cpu().contiguous()
        widths: list[int] = []

        def both(x: torch.Tensor) -> torch.Tensor:
            out = self.request.infer({0: x.numpy()})
            if len(out) < 2:
                raise ValueError("this graph gives its logits only, not the features its 'not sure' score reads")
            logits, features = (torch.from_numpy(np.array(out[i])) for i in (0, 1))
            widths[:] = [logits.shape[1]]
            return torch.cat([logits, features], 1)
        joined = both(images) if self.batch is None else in_fixed_batches(images, self.batch, both)
        return joined[:, :widths[0]], joined[:, widths[0]:]

    def eval(self) -> OpenVinoClassifier:
        return self
