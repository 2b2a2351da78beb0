"""The runtimes a model is served on, and the files they run.

PyTorch runs the model as it is; ONNX Runtime and OpenVINO run an ONNX file exported from it (fp32, or int8
calibrated on the model's training images). Those files are built once and kept in a cache folder under
names made of the model file's hash (and, for int8, of the calibration images and settings), so that a
second start finds them; an ONNX file given as the model is served as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..deploy.export import export_onnx
from ..deploy.quantize import quantize_onnx
from ..deploy.runtimes import OpenVinoClassifier, installed, missing_reason
from ..device import int8_dot_product
from ..errors import ExportError, ServeError
from ..files import cache_dir, entry_problem
from ..infer.calibrate import Calibration
from ..infer.logits import logits_and_features
from ..infer.onnx import OnnxClassifier
from ..model.weights import sha256_of
from ..version import __version__

RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
"""What ``serve --runtime`` accepts besides ``auto``, fastest last on most CPUs."""
ENGINE = {"torch": None, "onnxruntime": "onnxruntime", "onnxruntime-int8": "onnxruntime",
          "openvino": "openvino", "openvino-int8": "openvino"}
"""The optional package each runtime needs (a key of :data:`~ghostmixnet.deploy.runtimes.RUNTIMES`)."""
INT8 = frozenset({"onnxruntime-int8", "openvino-int8"})
CALIBRATION_IMAGES = 512
"""Training images an int8 file is calibrated on (as ``ghostmixnet quantize`` does by default)."""

CPU = torch.device("cpu")
Classifier = Callable[[torch.Tensor], torch.Tensor]
"""Normalized (N, 3, 32, 32) float images to (N, classes) logits."""


@dataclass
class Source:
    """The model to serve, as loaded once: the PyTorch module (None when the model given is an ONNX file), its
    config (None for an ONNX file that ghostmixnet did not write), its file, and that file's hash."""

    model: torch.nn.Module | None
    cfg: TrainConfig | None
    file: Path
    calibration: Calibration
    digest: str = ""

    def __post_init__(self) -> None:
        self.digest = self.digest or sha256_of(self.file)


def available(runtime: str, source: Source) -> str | None:
    """Why ``runtime`` cannot serve ``source`` here (one line naming the fix), or None when it can."""
    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r}; choose from auto, {', '.join(RUNTIMES)}"
    engine = ENGINE[runtime]
    if engine is not None and not installed(engine):
        return f"{runtime}: {missing_reason(engine)}"
    if source.model is None and runtime == "torch":
        return "torch: the model is an ONNX file; serve its checkpoint to run it in PyTorch"
    if source.model is None and runtime in INT8:
        return f"{runtime}: the model is an ONNX file, served as it is: choose {runtime.removesuffix('-int8')}"
    return None


def runtime_file(runtime: str, source: Source, calibration_images: np.ndarray | None, folder: Path | None = None,
                 log: Callable[[str], None] = print) -> Path | None:
    """The ONNX file ``runtime`` runs (None for PyTorch): the model's own when it is one, else the cached export
    (fp32) or its int8 quantization, built here the first time. int8 needs ``calibration_images``."""
    if runtime == "torch":
        return None
    if source.model is None:
        return source.file
    folder = Path(folder) if folder is not None else cache_dir("serve")
    cfg = source.cfg or TrainConfig()
    fp32 = folder / f"{source.digest[:16]}-fp32-{__version__}.onnx"
    if not fp32.is_file():
        log(f"exporting {source.file.name} to ONNX for serving (kept as {fp32})")
        _build(fp32, lambda path: export_onnx(source.model, cfg, path, calibration=source.calibration))
    if runtime not in INT8:
        return fp32
    if calibration_images is None:
        raise ExportError(f"{runtime} needs training images to calibrate int8 on: give --data-dir (the model's data)")
    bits = 7 if int8_dot_product() is False else 8  # as quantize_onnx chooses for this CPU
    key = hashlib.sha256(np.ascontiguousarray(calibration_images).tobytes()).hexdigest()[:12]
    int8 = folder / f"{source.digest[:16]}-int8-w{bits}-{key}-{__version__}.onnx"
    if not int8.is_file():
        log(f"quantizing to int8 on {len(calibration_images)} training images (kept as {int8})")
        _build(int8, lambda path: quantize_onnx(fp32, path, calibration_images, normalization=cfg.normalization))
    return int8


def _build(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through ``write`` in a temporary folder beside it, then rename it into place: a start that
    is interrupted leaves no half file for the next one to find."""
    if os.path.lexists(path):  # something that is no readable file sits where the file goes
        raise ServeError(f"cannot keep {path.name} in the cache: {path} {entry_problem(path) or 'is in the way'}; "
                         "remove it and start again")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    try:
        write(tmp / path.name)
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_classifier(runtime: str, source: Source, file: Path | None, threads: int,
                    device: torch.device = CPU, features: bool = False) -> Classifier:
    """A classifier of normalized images on ``runtime`` with ``threads`` threads. One per worker: OpenVINO's
    infer requests are not to be shared between threads. With ``features`` (for a feature-space "not sure"
    score), it gives each image's logits followed by its penultimate features, in one row: every runtime has them,
    from the graph ``export_onnx`` writes with a second output when the calibration reads them (int8 ones quantize
    it too)."""
    if features:
        classify = (source.model.to(device).eval() if runtime == "torch" else
                    OnnxClassifier(file, threads=threads, spinning=False) if ENGINE[runtime] == "onnxruntime" else
                    OpenVinoClassifier(file, threads=threads, precision=None if runtime in INT8 else "f32"))

        def both(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                logits, feats = logits_and_features(classify, x.to(device))
            return torch.cat([logits.float(), feats.float()], 1).cpu()
        return both
    if runtime == "torch":
        model = source.model.to(device).eval()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(x.to(device)).float().cpu()

        return run
    if ENGINE[runtime] == "onnxruntime":
        return OnnxClassifier(file, threads=threads, spinning=False)
    # OpenVINO's fp32 runs in fp32 (its default is bf16 on CPUs with native bf16); its int8 keeps its default
    # for the layers left in float, which the measured accuracy then covers.
    return OpenVinoClassifier(file, threads=threads, precision=None if runtime in INT8 else "f32")
