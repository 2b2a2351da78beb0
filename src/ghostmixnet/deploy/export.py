"""Export: ONNX files and ExecuTorch programs of the folded inference graph, verified against PyTorch in their
own runtimes (ONNX Runtime, ExecuTorch).

The exported graph takes normalized float32 images (N, 3, S, S) at the model's size S (32 unless trained at
another ``--image-size``) with a dynamic batch and returns
logits (N, classes). The run's config, the class names and the normalization constants travel in
the file's metadata, with the model's calibration (temperature and "not sure" threshold) when it has one,
so an ONNX file can be evaluated and used for prediction on its own.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import count
from ..config import TrainConfig
from ..data.cifar import load_cifar10
from ..data.sources import data_files, has_data, load_data
from ..data.splits import calibration_images
from ..errors import ExportError
from ..files import atomic_open, check_output, raise_if_exhausted
from ..infer.calibrate import NOVELTY, Calibration, calibration_of, novelty_text
from ..infer.load import model_from_checkpoint
from ..infer.logits import logits_and_features, normalize_uint8
from ..infer.onnx import OnnxClassifier
from ..model.checkpoint import beside, resolve_checkpoint
from .fold import fold_for_inference
from .micro import MicroClassifier, arena_bytes, export_tflite
from .pte import PteClassifier, export_pte
from .runtimes import require

OPSET = 17


class WithFeatures(nn.Module):
    """A model whose forward gives its logits and its penultimate features: the graph exported for a calibration
    whose "not sure" score reads the features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits_and_features(self.model, x)


def export_onnx(model: nn.Module, cfg: TrainConfig, path: Path, calibration: Calibration | None = None) -> Path:
    """Fold BatchNorm and write an ONNX model with a dynamic batch dimension and ghostmixnet metadata (with
    ``calibration``, if the model has one). A calibration whose score reads the features gets a graph with a
    second output, ``features``, and its fitted arrays in the metadata."""
    import onnx  # optional: the 'deploy' extra

    folded, _ = fold_for_inference(model)
    features = calibration is not None and calibration.needs_features
    outputs = ["logits", "features"] if features else ["logits"]
    if features:
        folded = WithFeatures(folded).eval()
    example = torch.zeros(1, 3, cfg.image_size, cfg.image_size)  # the graph takes images of the model's size
    with tempfile.TemporaryDirectory() as tmp:
        # The TorchScript-based exporter handles this static graph without the extra onnxscript dependency the
        # torch.export-based one needs; it is deprecated since PyTorch 2.9, so its warning is silenced here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                torch.onnx.export(folded, (example,), str(Path(tmp) / "m.onnx"), dynamo=False, opset_version=OPSET,
                                  input_names=["images"], output_names=outputs,
                                  dynamic_axes={"images": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
            except (OSError, RuntimeError) as e:  # its temporary copy hit a full disk or a file-size limit
                raise_if_exhausted(e, path, Path(tmp))
                raise
        proto = onnx.load(str(Path(tmp) / "m.onnx"))
    mean, std = cfg.normalization
    metadata = {"ghostmixnet_config": json.dumps(cfg.to_dict()), "classes": json.dumps(list(cfg.class_names)),
                "mean": json.dumps(list(mean)), "std": json.dumps(list(std))}
    if calibration is not None and calibration.fitted:
        metadata["calibration"] = json.dumps(calibration.to_dict())
    if features:
        metadata[NOVELTY] = novelty_text(calibration)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    with atomic_open(path, "wb") as f:  # whole or not at all, and a full disk said in one line
        f.write(proto.SerializeToString())
    return Path(path)


def compare(reference: nn.Module, candidate: Any, images: torch.Tensor) -> dict[str, float]:
    """Largest absolute logit difference and top-1 agreement of two classifiers on the same inputs."""
    with torch.no_grad():
        a, b = reference.eval()(images).float(), candidate(images).float()
    agreement = float((a.argmax(1) == b.argmax(1)).float().mean())
    return {"max_abs_diff": float((a - b).abs().max()), "top1_agreement": agreement, "images": int(images.shape[0])}


def verification_images(data_dir: Path, count: int, cfg: TrainConfig | None = None) -> tuple[np.ndarray, str]:
    """Up to ``count`` test images of the model's data (``cfg``'s; CIFAR-10 without one) when ``data_dir``
    holds them, else as many generated ones (an export needs no dataset); with a few words saying which."""
    dataset = cfg.dataset if cfg is not None else "cifar10"
    if not has_data(dataset, data_dir):
        size = cfg.image_size if cfg is not None else 32
        generated = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        name = "CIFAR-10" if dataset == "cifar10" else f"{dataset} data"
        return generated, f"generated images (random pixels: no {name} in {data_dir}; pass --data-dir to use it)"
    # Data that is there but cannot be read (a corrupt or hostile file) stops the export.
    if dataset == "cifar10":
        return load_cifar10(data_dir, train=False).images[:count], "test images"
    return load_data(dataset, data_dir, **cfg.data_fields()).test.images[:count], f"{dataset} test images"


def check_suffix(out: Path, suffix: str, kind: str) -> None:
    """Refuse an ``--out`` that would not end in ``suffix``: the commands that read a model file (predict, eval,
    serve, bench) tell its kind by its suffix, and would take the file for another kind."""
    if out.suffix.lower() != suffix:
        fixed = out.with_suffix("") if out.stem.lower().endswith(suffix) else out.with_name(out.stem + suffix)
        raise ExportError(f"--out {out}: {kind} files must end in {suffix}, which the commands that read them go by; "
                          f"e.g. --out {fixed}")


FORMATS = {
    # format: (file suffix, what is written)
    "onnx": (".onnx", "ONNX, opset 17, dynamic batch"),
    "executorch": (".pte", "ExecuTorch program, XNNPACK, fp32"),
    "executorch-int8": ("-int8.pte", "ExecuTorch program, XNNPACK, int8"),
    "tflite": ("-int8.tflite", "LiteRT int8 for TFLite Micro, one image at a time"),
}
CALIBRATION_IMAGES = 512


def export_checkpoint(checkpoint: Path, out: Path | None, data_dir: Path, verify_images: int = 512,
                      format: str = "onnx", batch: int = 1, echo: Callable[[str], None] = print) -> Path:
    """Export a checkpoint (a run folder stands for its ``best.pt``) as ``out`` (default: beside it, named by
    the format) in one of :data:`FORMATS`: ONNX (:func:`export_onnx`) or an ExecuTorch program for ``batch``
    images at a time (:func:`~.pte.export_pte`; int8 calibrated on training images of ``data_dir``). Then
    check the folded graph's and the file's logits against PyTorch's on ``verify_images`` images
    (:func:`verification_images`; 0 skips), the file run in its own runtime."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    verify_images = count(verify_images, "verify_images", minimum=0)
    batch = count(batch, "batch")
    suffix, description = FORMATS[format]
    for runtime in {"executorch": ("executorch",), "executorch-int8": ("executorch",),
                    "tflite": ("litert-torch", "tflite-micro")}.get(format, ()):
        require(runtime)  # before any work: the message names the extra
    checkpoint = resolve_checkpoint(checkpoint)
    out = Path(out) if out is not None else beside(checkpoint, checkpoint.stem + suffix)
    check_output(out, [checkpoint, *data_files("cifar10", data_dir)])
    model, cfg, ckpt = model_from_checkpoint(checkpoint)
    check_output(out, data_files(cfg.dataset, data_dir))
    check_suffix(out, "." + suffix.rsplit(".", 1)[-1], description.split(",")[0])
    images, kind = None, ""
    if verify_images > 0:  # read the data before writing anything, so a bad data file fails early
        raw, kind = verification_images(data_dir, verify_images, cfg)
        images = normalize_uint8(raw, torch.device("cpu"), normalization=cfg.normalization)
    folded, report = fold_for_inference(model)
    if format == "onnx":
        export_onnx(model, cfg, out, calibration_of(ckpt, str(checkpoint)))
        candidate: Any = OnnxClassifier(out)
    elif format == "tflite":
        calibration = _calibration(cfg, data_dir)
        export_tflite(model, cfg, out, calibration)
        candidate = MicroClassifier(out)
        description += (f", calibrated on {len(calibration)} training images; TFLite Micro needs a "
                        f"{arena_bytes(out, size=cfg.image_size):,}-byte arena")
    else:
        calibration = _calibration(cfg, data_dir) if format == "executorch-int8" else None
        export_pte(model, cfg, out, batch=batch, calibration=calibration)
        candidate = PteClassifier(out)
        description += f", batch {batch}" + (f", calibrated on {len(calibration)} training images"
                                             if calibration is not None else "")
    size = out.stat().st_size
    echo(f"wrote {out} ({f'{size / 1e6:.2f} MB' if size >= 1e6 else f'{size:,} bytes'}, {description}); BatchNorm: "
         f"{report}")
    if images is not None:
        for label, runner in (("folded graph vs PyTorch:", folded), (f"{_runtime(format)} vs PyTorch:", candidate)):
            result = compare(model, runner, images)
            echo(f"{label:<26} max |logit diff| {result['max_abs_diff']:.2e}, top-1 agreement "
                 f"{100 * result['top1_agreement']:.2f}% on {result['images']} {kind}")
    return out


def _runtime(format: str) -> str:
    return {"onnx": "ONNX Runtime", "tflite": "TFLite Micro"}.get(format, "ExecuTorch")


def _calibration(cfg: TrainConfig, data_dir: Path) -> torch.Tensor:
    """Normalized training images (outside the validation split) to calibrate an int8 program on."""
    if not has_data(cfg.dataset, data_dir):
        raise ExportError(f"an int8 export calibrates on training images, and {data_dir} holds no {cfg.dataset} "
                          "data: pass --data-dir with the model's training data")
    train = load_data(cfg.dataset, data_dir, **cfg.data_fields()).train
    raw = calibration_images(train, CALIBRATION_IMAGES, seed=cfg.split_seed + 2)
    return normalize_uint8(raw, torch.device("cpu"), normalization=cfg.normalization)
