"""Deployment formats: BatchNorm folding, ONNX export verified with ONNX Runtime, and ONNX models as classifiers.

The exported graph takes normalized float32 images (N, 3, 32, 32) with a dynamic batch and returns
logits (N, classes). The run's config, the class names and the normalization constants travel in
the file's metadata, so an ONNX file can be evaluated and used for prediction on its own.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .config import TrainConfig
from .data import CLASSES, MEAN, STD
from .files import check_output

OPSET = 17


class ExportError(Exception):
    """An export or an exported file is unusable; the message says why."""


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm that directly follows a convolution folded into it.

    BatchNorms that follow a ReLU or a concatenation (the extra ones in each Ghost block) cannot be
    folded into a convolution exactly and are kept.
    """
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def export_onnx(model: nn.Module, cfg: TrainConfig, path: Path) -> Path:
    """Fold BatchNorm and write an ONNX model with a dynamic batch dimension and ghostmixnet metadata."""
    import onnx

    folded = fold_batchnorm(model)
    example = torch.zeros(1, 3, 32, 32)
    # The TorchScript-based exporter handles this static graph without the extra onnxscript dependency the
    # torch.export-based one needs; it is deprecated since PyTorch 2.9, so its warning is silenced here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(folded, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    for key, value in {"ghostmixnet_config": json.dumps(cfg.to_dict()), "classes": json.dumps(CLASSES),
                       "mean": json.dumps(MEAN), "std": json.dumps(STD)}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


class OnnxClassifier:
    """An ONNX file run by ONNX Runtime, called like a PyTorch model on normalized (N, 3, 32, 32) tensors."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = self.path = Path(path)
        if not path.is_file():
            raise ExportError(f"ONNX file {path} does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for any unreadable file
            raise ExportError(f"{path} is not a usable ONNX model: {str(e).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        outputs = self.session.get_outputs()
        width = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if len(outputs) != 1 or (isinstance(width, int) and width != len(CLASSES)):
            raise ExportError(f"{path}: the model gives {len(outputs)} output(s) of width {width}, not one of "
                              f"{len(CLASSES)} CIFAR-10 logits; use a model exported by `ghostmixnet export`")

    def config(self) -> TrainConfig | None:
        """The training config stored at export, if the file was written by ghostmixnet."""
        raw = self.metadata.get("ghostmixnet_config")
        try:
            return TrainConfig.from_dict(json.loads(raw)) if raw else None
        except (ValueError, TypeError) as e:
            raise ExportError(f"{self.path}: its ghostmixnet_config metadata is invalid ({e})") from None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().float().cpu().numpy())
        logits = torch.from_numpy(self.session.run(None, {self.input_name: x})[0])
        if logits.ndim != 2 or logits.shape[1] != len(CLASSES):  # a dynamic output width, checked when known
            raise ExportError(f"{self.path}: the model gave logits of shape {tuple(logits.shape)}, not "
                              f"(N, {len(CLASSES)})")
        return logits

    def eval(self) -> OnnxClassifier:
        return self

    def to(self, *_args: Any, **_kwargs: Any) -> OnnxClassifier:
        return self



def compare(reference: nn.Module, candidate: Any, images: torch.Tensor) -> dict[str, float]:
    """Largest absolute logit difference and top-1 agreement of two classifiers on the same inputs."""
    with torch.no_grad():
        a, b = reference.eval()(images).float(), candidate(images).float()
    agreement = float((a.argmax(1) == b.argmax(1)).float().mean())
    return {"max_abs_diff": float((a - b).abs().max()), "top1_agreement": agreement, "images": int(images.shape[0])}


def load_classifier(path: Path) -> tuple[Any, TrainConfig | None, dict[str, Any]]:
    """A checkpoint (``.pt``) or an exported ONNX file as (callable model, its config, extra info)."""
    from .checkpoint import model_from_checkpoint

    if Path(path).suffix.lower() == ".onnx":
        clf = OnnxClassifier(path)
        return clf, clf.config(), {"epoch": "exported"}
    return model_from_checkpoint(path)  # a run folder stands for its best.pt


def verification_images(data_dir: Path, count: int) -> tuple[np.ndarray, str]:
    """Up to ``count`` CIFAR-10 test images when ``data_dir`` holds them, else as many generated ones (an
    export needs no dataset); with a few words saying which."""
    from .data import DataError, find_cifar_folder, load_cifar10

    try:
        find_cifar_folder(data_dir)
    except DataError:
        generated = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        return generated, f"generated images (random pixels: no CIFAR-10 in {data_dir}; pass --data-dir to use it)"
    return load_cifar10(data_dir, train=False).images[:count], "test images"


def export_checkpoint(checkpoint: Path, out: Path, data_dir: Path, verify_images: int = 512,
                      echo: Callable[[str], None] = print) -> Path:
    """Export a checkpoint to ONNX (:func:`export_onnx`), then check BatchNorm folding and ONNX Runtime's
    logits against PyTorch's on ``verify_images`` images (:func:`verification_images`; 0 skips)."""
    from .checkpoint import model_from_checkpoint
    from .engine import normalize_uint8

    check_output(out, [checkpoint])
    model, cfg, _ = model_from_checkpoint(checkpoint)
    images, kind = None, ""
    if verify_images > 0:  # read the data before writing anything, so a bad data file fails early
        raw, kind = verification_images(data_dir, verify_images)
        images = normalize_uint8(raw, torch.device("cpu"))
    export_onnx(model, cfg, out)
    echo(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, opset 17, dynamic batch, BatchNorm folded)")
    if images is not None:
        for label, candidate in (("BatchNorm folding vs PyTorch:", fold_batchnorm(model)),
                                 ("ONNX Runtime vs PyTorch:     ", OnnxClassifier(out))):
            result = compare(model, candidate, images)
            echo(f"{label} max |logit diff| {result['max_abs_diff']:.2e}, top-1 agreement "
                 f"{100 * result['top1_agreement']:.2f}% on {result['images']} {kind}")
    return out
