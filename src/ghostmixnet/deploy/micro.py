"""Microcontroller files: int8 LiteRT (``.tflite``) models that TFLite Micro runs, checked in its own interpreter.

The folded inference graph (``fold.py``) is exported, quantized with litert-torch's PT2E quantizer (int8 weights
per output channel, int8 activations calibrated on training images; the input and output int8 too, their scale
and zero point in the file) and converted by litert-torch. The converter names every tensor after the compiler
pass that made it; on a microcontroller the file lives in flash, and the names were over a third of it, so they
are stripped. :class:`MicroClassifier` runs a file in the ``tflite-micro`` package's interpreter, TFLite Micro's
own kernels, one image at a time as a device does; :func:`arena_bytes` finds the working memory it needs. The
config, class names and normalization go into ``FILE.tflite.json`` beside it, as for an ExecuTorch program.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ExportError
from ..files import atomic_open, entry_problem, write_text_atomic
from .fold import fold_for_inference
from .pt2e import calibrate
from .pte import sidecar
from .runtimes import require


def quantize_for_litert(model: nn.Module, calibration: torch.Tensor) -> tuple[nn.Module, object]:
    """``model`` (batch 1) quantized with litert-torch's quantizer, activation ranges seen on ``calibration``;
    and the quantizer, which the conversion needs again."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config  # optional
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (calibration[:1],)).module(), quantizer)
    prepared = calibrate(prepared, model, calibration.split(1))  # captured for one image, as a device runs it
    return convert_pt2e(prepared, fold_quantize=False), quantizer


def strip_names(flatbuffer: bytes) -> bytes:
    """The same model with every tensor's name emptied (names are for debugging, and cost flash)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema  # optional: the 'micro' extra

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = ""
    builder = flatbuffers.Builder(len(flatbuffer))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite(model: nn.Module, cfg: TrainConfig, path: Path, calibration: torch.Tensor) -> Path:
    """Write ``model`` as an int8 ``.tflite`` file for one (1, 3, S, S) normalized image of its size, calibrated on
    ``calibration`` (normalized images), with its metadata in :func:`~.pte.sidecar`."""
    require("litert-torch")
    import litert_torch  # optional: the 'micro' extra
    from litert_torch.quantize.quant_config import QuantConfig

    folded, _ = fold_for_inference(model)
    quantized, quantizer = quantize_for_litert(folded, calibration)
    edge = litert_torch.convert(quantized, (calibration[:1],), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    with atomic_open(path, "wb") as f:
        f.write(strip_names(edge.model_content()))
    mean, std = cfg.normalization
    write_text_atomic(sidecar(path), json.dumps({
        "ghostmixnet_config": cfg.to_dict(), "classes": list(cfg.class_names), "mean": list(mean), "std": list(std),
        "batch": 1, "int8": True}, indent=1))
    return Path(path)


def _interpreter(data: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime  # optional: the 'micro' extra

    return runtime.Interpreter.from_bytes(data, arena_size=arena)


class MicroClassifier:
    """An int8 ``.tflite`` file run by TFLite Micro's interpreter, called like a PyTorch model on normalized
    (N, 3, S, S) tensors of its :attr:`image_size` S: each image quantized with the file's input scale, run
    alone, its logits dequantized."""

    def __init__(self, path: Path, arena: int = 1 << 20) -> None:
        require("tflite-micro")
        path = Path(path)
        problem = entry_problem(path)
        if problem is not None:
            raise ExportError(f"LiteRT file {path} {problem}")
        try:
            self.interpreter = _interpreter(path.read_bytes(), arena)
            inputs, outputs = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        except Exception as e:  # the interpreter raises RuntimeError or ValueError for any unusable file
            raise ExportError(f"{path} is not a usable TFLite Micro model: {str(e).splitlines()[0]}") from None
        shape = list(inputs["shape"])
        if len(shape) != 4 or shape[:2] != [1, 3] or shape[2] != shape[3] or inputs["dtype"] != np.int8:
            raise ExportError(f"{path} takes {inputs['dtype'].__name__} inputs of shape {shape}, not one int8 "
                              "(3, S, S) image; use a file written by `ghostmixnet export --format tflite`")
        self.image_size = int(shape[2])
        self.input_scale, self.input_zero = _quantization(inputs)
        self.output_scale, self.output_zero = _quantization(outputs)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().float().cpu().numpy()
        q = np.clip(np.round(x / self.input_scale) + self.input_zero, -128, 127).astype(np.int8)
        logits = []
        for image in q:
            self.interpreter.set_input(image[None], 0)
            self.interpreter.invoke()
            out = self.interpreter.get_output(0).astype(np.float32)
            logits.append((out - self.output_zero) * self.output_scale)
        return torch.from_numpy(np.concatenate(logits))

    def eval(self) -> MicroClassifier:
        return self


def _quantization(details: dict) -> tuple[float, int]:
    params = details["quantization_parameters"]
    return float(params["scales"][0]), int(params["zero_points"][0])


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """TFLite Micro prints each failed allocation to the process's stderr from C++; a search tries many."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def arena_bytes(path: Path, step: int = 16, size: int = 32) -> int:
    """The smallest tensor arena (to ``step`` bytes) in which TFLite Micro prepares and runs the file: the
    working memory a device must give it (activations and the kernels' scratch; the weights stay in flash) for
    ``size``-pixel images."""
    require("tflite-micro")
    data = Path(path).read_bytes()
    shape = (1, 3, size, size)

    def runs(arena: int) -> bool:
        try:
            interpreter = _interpreter(data, arena)
            interpreter.set_input(np.zeros(shape, np.int8), 0)
            interpreter.invoke()
            return True
        except (RuntimeError, ValueError):
            return False

    low, high = 0, 1 << 20
    with _quiet_native_stderr():
        fits_largest = runs(high)
        while fits_largest and high - low > step:
            middle = (low + high) // 2
            low, high = (low, middle) if runs(middle) else (middle, high)
    if not fits_largest:
        raise ExportError(f"{path} does not run in TFLite Micro even with a 1 MB arena")
    return high
