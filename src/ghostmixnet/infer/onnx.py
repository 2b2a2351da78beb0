"""ONNX files as classifiers: run by ONNX Runtime (an optional dependency), called like a PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..data.cifar import CLASSES
from ..errors import DataError, ExportError
from ..files import open_regular


class OnnxClassifier:
    """An ONNX file run by ONNX Runtime, called like a PyTorch model on normalized (N, 3, S, S) tensors of its
    :attr:`image_size` S."""

    def __init__(self, path: Path, threads: int | None = None, spinning: bool = True) -> None:
        """``spinning=False`` lets ONNX Runtime's idle threads sleep instead of busy-waiting for the next call: a
        little latency given up so that a service's other work (HTTP, decoding) gets the cores between calls."""
        import onnxruntime as ort  # optional: the 'deploy' extra

        path = self.path = Path(path)
        try:  # opened here first: a FIFO never blocks and an unreadable file is named in the package's words
            with open_regular(path, "ONNX file"):
                pass
        except DataError as e:
            raise ExportError(str(e)) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for any unreadable file
            raise ExportError(f"{path} is not a usable ONNX model: {str(e).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.classes = self._classes()
        self.image_size = self._image_size()
        outputs = self.session.get_outputs()
        width = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        # A second output, named features, is what a feature-space "not sure" score reads (export_onnx).
        self.has_features = len(outputs) == 2 and outputs[1].name == "features"
        if not (len(outputs) == 1 or self.has_features) or (isinstance(width, int) and width != len(self.classes)):
            raise ExportError(f"{path}: the model gives {len(outputs)} output(s) of width {width}, not one of "
                              f"{len(self.classes)} logits, one per class of its class list; use a model exported "
                              "by `ghostmixnet export`")

    def _classes(self) -> tuple[str, ...]:
        """The class list in the file's metadata (CIFAR-10's for a file without one)."""
        raw = self.metadata.get("classes")
        if raw is None:
            return CLASSES
        try:
            classes = json.loads(raw)
        except ValueError:
            classes = None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise ExportError(f"{self.path}: its 'classes' metadata is not a list of class names")
        return tuple(classes)

    def _image_size(self) -> int:
        """The side of the square images the graph takes: its input's fixed height, else its config's, else 32."""
        shape = self.session.get_inputs()[0].shape
        if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
            return shape[2]
        cfg = self.config()
        return cfg.image_size if cfg is not None else 32

    def config(self) -> TrainConfig | None:
        """The training config stored at export, if the file was written by ghostmixnet."""
        raw = self.metadata.get("ghostmixnet_config")
        try:
            cfg = TrainConfig.from_dict(json.loads(raw)) if raw else None
        except (ValueError, TypeError) as e:
            raise ExportError(f"{self.path}: its ghostmixnet_config metadata is invalid ({e})") from None
        if cfg is not None and cfg.class_names != self.classes:
            raise ExportError(f"{self.path}: its config's classes and its 'classes' metadata differ; export it again")
        return cfg

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images, ["logits"] if self.has_features else None)[0]

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features, from a file exported with its features (``has_features``)."""
        if not self.has_features:
            raise ValueError(f"{self.path} gives its logits only, not the features its 'not sure' score reads; "
                             "export it again with this version of ghostmixnet")
        logits, features = self._run(images, None)
        return logits, features

    def _run(self, images: torch.Tensor, names: list[str] | None) -> list[torch.Tensor]:
        x = np.ascontiguousarray(images.detach().float().cpu().numpy())
        out = [torch.from_numpy(o) for o in self.session.run(names, {self.input_name: x})]
        logits = out[0]
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):  # a dynamic output width, checked when known
            raise ExportError(f"{self.path}: the model gave logits of shape {tuple(logits.shape)}, not "
                              f"(N, {len(self.classes)})")
        return out

    def eval(self) -> OnnxClassifier:
        return self

    def to(self, *_args: Any, **_kwargs: Any) -> OnnxClassifier:
        return self
