"""int8 post-training static quantization of an exported ONNX model with ONNX Runtime.

Weights are quantized per output channel (int8), activations per tensor (uint8) with ranges
calibrated on training images. Layers that may quantize badly can be kept in float: the depthwise
"cheap" convolutions of the Ghost modules, the Squeeze-and-Excitation branches, the stem, the head.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from ..checks import count, names
from ..data.sources import data_files, load_data
from ..data.splits import calibration_images
from ..device import int8_dot_product
from ..files import atomic_open, check_output
from ..infer.calibrate import calibration_of
from ..infer.evaluate import evaluate
from ..infer.load import model_from_checkpoint
from ..infer.logits import Normalization, normalize_uint8
from ..infer.onnx import OnnxClassifier
from ..model.checkpoint import beside, resolve_checkpoint
from .export import check_suffix, export_onnx

KEEP_FLOAT_CHOICES = ("depthwise", "se", "stem", "head")
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")
# Every operation of the folded graph runs in int8, the residual and bias additions, the concatenations, SE's
# pooling, gate and scaling included: ONNX Runtime then fuses each into one QLinear kernel and the graph has no
# float islands, no conversions between them (batch-1 latency 3.00 -> 2.44 ms at two threads on a Zen 4 EPYC,
# OpenVINO 3.48 -> 3.20 ms; docs/deployment.md has the accuracy on the 10,000 test images).
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add", "Mul", "Concat", "GlobalAveragePool", "AveragePool", "Sigmoid",
                 "Relu"]


def float_nodes(onnx_path: Path, keep_float: Iterable[str]) -> list[str]:
    """Names of the nodes to leave in float: unfolded BatchNorms always, plus on request the depthwise
    3x3 convolutions, the SE branches, the stem convolution and/or the classifier."""
    import onnx  # optional, as all of ONNX here: the 'deploy' extra

    keep = set(keep_float)
    unknown = keep - set(KEEP_FLOAT_CHOICES)
    if unknown:
        raise ValueError(f"unknown --keep-float {sorted(unknown)}; choose from {', '.join(KEEP_FLOAT_CHOICES)}")
    names = []
    nodes = list(onnx.load(str(onnx_path)).graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    if "stem" in keep and convs:
        names.append(convs[0].name)
    if "head" in keep:
        names += [n.name for n in nodes if n.op_type == "Gemm"]
    for node in nodes:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
        # The BatchNorms that could not be folded have rank-1 per-channel scales, which ONNX Runtime's
        # per-channel path rejects (it warns and falls back to one scale per tensor): keep them float.
        # "depthwise" means the cheap 3x3 convolutions, not the folded graph's 1x1 per-channel affines.
        if (node.op_type == "BatchNormalization"
                or ("depthwise" in keep and node.op_type == "Conv" and group > 1 and max(kernel) > 1)
                or ("se" in keep and "/se/" in node.name)):
            names.append(node.name)
    return names


def _calibration_reader(images: np.ndarray, input_name: str, batch_size: int = 64,
                        normalization: Normalization | None = None):
    """An ONNX Runtime calibration reader that feeds normalized image batches once.

    Every batch has the same size (the largest divisor of the image count up to ``batch_size``): the
    percentile and entropy calibrators stack the batches' outputs, and a short last batch breaks that."""
    from onnxruntime.quantization import CalibrationDataReader  # optional: the 'deploy' extra

    batch_size = max(d for d in range(1, max(1, min(batch_size, len(images))) + 1) if len(images) % d == 0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter([normalize_uint8(images[i:i + batch_size], torch.device("cpu"),
                                                 normalization=normalization).numpy()
                                 for i in range(0, len(images), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Reader()


def quantize_onnx(float_path: Path, out_path: Path, calibration_images: np.ndarray,
                  keep_float: Iterable[str] = (), reduce_range: bool | None = None, calibration: str = "percentile",
                  percentile: float = 99.99, normalization: Normalization | None = None) -> Path:
    """Write an int8 QDQ model calibrated on ``calibration_images`` ((N, 32, 32, 3) uint8, normalised with the
    model's ``normalization``; None: CIFAR-10's).

    ``calibration`` chooses how activation ranges are set: ``percentile`` clips each range at the
    ``percentile``-th percentile of the observed magnitudes (robust to the rare large activations
    that otherwise waste most of the 256 levels), ``minmax`` takes the full observed range,
    ``entropy`` minimizes the KL divergence of the quantized histogram. ``reduce_range`` quantizes
    weights to 7 bits, which avoids the overflow of 8-bit products on x86 CPUs without VNNI; None (auto)
    does so where this CPU has no int8 dot-product instructions.
    """
    if reduce_range is None:
        reduce_range = int8_dot_product() is False
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # optional
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {calibration!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    if not 0 < percentile <= 100:
        raise ValueError(f"--percentile must be in (0, 100], got {percentile}")
    exclude = float_nodes(float_path, keep_float)
    method = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
              "entropy": CalibrationMethod.Entropy}[calibration]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        import onnx  # optional: the 'deploy' extra

        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), _calibration_reader(calibration_images, input_name,
                                                                                 normalization=normalization),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=exclude, op_types_to_quantize=QUANTIZED_OPS,
                        extra_options={"CalibPercentile": percentile})
        _copy_metadata(float_path, quantized, out_path)
    return Path(out_path)


def _copy_metadata(src: Path, quantized: Path, dst: Path) -> None:
    """Write ``quantized`` to ``dst`` (whole or not at all) with the ghostmixnet metadata (config, classes) of
    ``src`` carried over."""
    import onnx  # optional: the 'deploy' extra

    source, target = onnx.load(str(src)), onnx.load(str(quantized))
    have = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            target.metadata_props.add(key=prop.key, value=prop.value)
    with atomic_open(dst, "wb") as f:
        f.write(target.SerializeToString())


def quantize_checkpoint(checkpoint: Path, out: Path | None, data_dir: Path, calibration_count: int = 512,
                        keep_float: Iterable[str] | str = (), reduce_range: bool | None = None,
                        calibration: str = "percentile", percentile: float = 99.99, eval_images: int = 10000,
                        echo: Callable[[str], None] = print) -> Path:
    """Export a checkpoint (a run folder stands for its ``best.pt``) to ONNX, quantize it to int8 as ``out``
    (default: beside it, with ``-int8.onnx``; :func:`quantize_onnx`, calibrated on :func:`calibration_images`
    of its own training split) and, with ``eval_images``, print the test accuracy of both on that many test
    images."""
    calibration_count = count(calibration_count, "calibration_images")
    eval_images = count(eval_images, "eval_images", minimum=0)
    checkpoint = resolve_checkpoint(checkpoint)
    out = Path(out) if out is not None else beside(checkpoint, checkpoint.stem + "-int8.onnx")
    check_output(out, [checkpoint, *data_files("cifar10", data_dir)])
    model, cfg, ckpt = model_from_checkpoint(checkpoint)
    check_output(out, data_files(cfg.dataset, data_dir))
    check_suffix(out, ".onnx", "ONNX")
    keep = list(names(keep_float))
    if reduce_range is None:
        reduce_range = int8_dot_product() is False
    splits = load_data(cfg.dataset, data_dir, **cfg.data_fields())
    images = calibration_images(splits.train, calibration_count, seed=cfg.split_seed + 2)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(model, cfg, Path(tmp) / "float.onnx", calibration_of(ckpt, str(checkpoint)))
        quantize_onnx(float_path, out, images, keep_float=keep, reduce_range=reduce_range, calibration=calibration,
                      percentile=percentile, normalization=cfg.normalization)
        method = f"percentile {percentile}" if calibration == "percentile" else calibration
        echo(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB; float {float_path.stat().st_size / 1e6:.2f} MB); "
             f"calibrated ({method}) on {len(images)} training images; kept in float: {', '.join(keep) or 'nothing'}"
             f"{'; 7-bit weights (--reduce-range)' if reduce_range else '; 8-bit weights'}")
        if eval_images > 0:
            test = splits.test.subset(np.arange(min(eval_images, len(splits.test))))
            cpu = torch.device("cpu")
            fp = evaluate(OnnxClassifier(float_path), test.images, test.labels, cpu, normalization=cfg.normalization)
            q = evaluate(OnnxClassifier(out), test.images, test.labels, cpu, normalization=cfg.normalization)
            echo(f"test accuracy on {len(test)} images: float {100 * fp.accuracy:.2f}%, int8 {100 * q.accuracy:.2f}% "
                 f"({100 * (q.accuracy - fp.accuracy):+.2f} points)")
    return out
