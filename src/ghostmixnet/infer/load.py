"""Any model file as a classifier: a checkpoint, a run folder, a ``.safetensors`` weights file, the word
``pretrained`` or an exported ONNX file, each with the config it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import TrainConfig, config_of
from ..data.cifar import CLASSES
from ..model.checkpoint import ModelSpec, load_checkpoint, rebuild
from .onnx import OnnxClassifier


def model_from_checkpoint(path: Path) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode on the CPU; with its config
    and the checkpoint's contents. Its logits are one per class of its own class list: the config refuses a
    list of another length, and the rebuild a classifier of another width."""
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    model = rebuild(ckpt.get("model"), ModelSpec(cfg.model, cfg.num_classes, cfg.width, cfg.dropout, cfg.image_size),
                    path)
    return model, cfg, ckpt


def load_classifier(path: Path) -> tuple[Any, TrainConfig | None, dict[str, Any]]:
    """A model file (a run folder stands for its ``best.pt``) or an exported ONNX file as (callable model, its
    config, extra info: the checkpoint's contents, whose calibration
:func:`~ghostmixnet.infer.calibrate.calibration_of` reads); the config is None for an ONNX file that
ghostmixnet did not write."""
    if Path(path).suffix.lower() == ".onnx":
        clf = OnnxClassifier(path)
        novelty = {k: v for k, v in clf.metadata.items() if k == "novelty"}
        return clf, clf.config(), {"epoch": "exported", "calibration": clf.metadata.get("calibration"),
                                   "metadata": novelty}
    return model_from_checkpoint(path)


def model_classes(model: Any, cfg: TrainConfig | None) -> tuple[str, ...]:
    """The class names of a model :func:`load_classifier` returned, in the order of its logits: its config's,
    else those of an ONNX file's metadata, else CIFAR-10's."""
    if cfg is not None:
        return cfg.class_names
    return tuple(getattr(model, "classes", CLASSES))
