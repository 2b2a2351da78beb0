"""int8 post-training static quantization of an exported ONNX model with ONNX Runtime.

Weights are quantized per output channel (int8), activations per tensor (uint8) with ranges
calibrated on training images. Layers known to quantize badly can be kept in float: the depthwise
"cheap" convolutions of the Ghost modules and the Squeeze-and-Excitation branches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader

from .engine import normalize_uint8

KEEP_FLOAT_CHOICES = ("depthwise", "se")


def float_nodes(onnx_path: Path, keep_float: Iterable[str]) -> list[str]:
    """Names of the nodes to leave in float: unfolded BatchNorms always, plus depthwise convolutions
    (group > 1) and/or the SE branches on request."""
    import onnx

    keep = set(keep_float)
    unknown = keep - set(KEEP_FLOAT_CHOICES)
    if unknown:
        raise ValueError(f"unknown --keep-float {sorted(unknown)}; choose from {', '.join(KEEP_FLOAT_CHOICES)}")
    names = []
    for node in onnx.load(str(onnx_path)).graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        # The BatchNorms that could not be folded have rank-1 per-channel scales, which ONNX Runtime's
        # per-channel path rejects (it warns and falls back to one scale per tensor): keep them float.
        if (node.op_type == "BatchNormalization"
                or ("depthwise" in keep and node.op_type == "Conv" and group > 1)
                or ("se" in keep and "/se/" in node.name)):
            names.append(node.name)
    return names


class _Calibration(CalibrationDataReader):
    """Feeds normalized image batches to ONNX Runtime's calibrator, once."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 64) -> None:
        super().__init__()
        self.batches = iter([normalize_uint8(images[i:i + batch_size], torch.device("cpu")).numpy()
                             for i in range(0, len(images), batch_size)])
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_onnx(float_path: Path, out_path: Path, calibration_images: np.ndarray,
                  keep_float: Iterable[str] = (), reduce_range: bool = False) -> Path:
    """Write an int8 QDQ model calibrated on ``calibration_images`` ((N, 32, 32, 3) uint8).

    ``reduce_range`` quantizes weights to 7 bits, which avoids the overflow of 8-bit products on
    x86 CPUs without VNNI at a small cost in precision.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    exclude = float_nodes(float_path, keep_float)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        import onnx

        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(str(prepared), str(out_path), _Calibration(calibration_images, input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
    _copy_metadata(float_path, out_path)
    return Path(out_path)


def _copy_metadata(src: Path, dst: Path) -> None:
    """Carry the ghostmixnet metadata (config, classes) over to the quantized file."""
    import onnx

    source, target = onnx.load(str(src)), onnx.load(str(dst))
    have = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            target.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(target, str(dst))
