"""Inference latency and throughput on this machine, for every way the package can run a model.

Each backend is timed the same way: a few untimed warm-up calls, then ``repeats`` timed calls of
batch 1 (latency: median and 90th percentile) and of a large batch (throughput: images/s from the
median call). The share of peak divides the model's useful work (2 x MACs per image, from
PyTorch's FLOP counter) by a matrix-multiply rate measured here in the same arithmetic (fp32, bf16
or int8) with the same thread count, so it says how far the network's small, memory-bound layers
are from what the cores can do.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checks import count, names
from ..config import TrainConfig
from ..data.cifar import load_cifar10
from ..device import native_cpu_support
from ..files import to_stderr
from ..infer.load import model_from_checkpoint
from ..infer.onnx import OnnxClassifier
from ..model.architectures import ARCHITECTURES, IMAGE_SIZE, build_architecture, count_parameters
from ..model.cost import stage_costs
from .export import export_onnx, fold_batchnorm
from .quantize import quantize_onnx

BACKENDS = ("eager", "fast", "ort", "ort-int8")


@dataclass
class BenchRow:
    """One backend's timings."""

    backend: str
    detail: str
    latency_ms_p50: float
    latency_ms_p90: float
    throughput: float
    batch_size: int
    arithmetic: str
    """The number format doing the work: fp32, bf16 or int8."""
    peak_share: float
    """Share of the measured matmul peak for ``arithmetic`` reached at the large batch (0..1)."""


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation, as numpy computes it."""
    return float(np.percentile(np.asarray(values), q))


def matmul_peak_gflops(threads: int, dtype: str = "fp32", size: int = 1024, repeats: int = 10) -> float:
    """Measured matrix-multiply rate (GFLOP/s, or GOP/s for int8) with ``threads`` threads: the practical
    peak for that arithmetic. fp32 and bf16 are timed in PyTorch, int8 in ONNX Runtime (MatMulInteger),
    since that is the engine that runs the int8 model."""
    if dtype == "int8":
        fn = _ort_int8_matmul(size, threads)
    else:
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(size, size, dtype=torch_dtype), torch.randn(size, size, dtype=torch_dtype)
        fn = lambda: a @ b  # noqa: E731
    with torch_threads(threads):
        seconds = statistics.median(time_calls(fn, repeats, warmup=3))
    return 2 * size**3 / seconds / 1e9


def _ort_int8_matmul(size: int, threads: int) -> Callable[[], object]:
    import onnx  # optional, as all of ONNX here: the 'deploy' extra
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (size, size), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_peak",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    onnx.checker.check_model(model)
    return lambda: session.run(None, {"a": a})


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run PyTorch with ``threads`` intra-op threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fast_model(model: nn.Module, compile: bool = False) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The PyTorch inference fast path: BatchNorm folded, channels-last, bf16 autocast where the CPU
    has native bf16 (fp32 otherwise), and optionally ``torch.compile``; returns it and a description."""
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    runner: Callable[[torch.Tensor], torch.Tensor] = torch.compile(folded) if compile else folded
    bf16 = native_cpu_support("bf16") is not False  # unknown: try it

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return runner(x)

    detail = f"folded BN, channels-last, {'bf16' if bf16 else 'fp32 (no native bf16)'}"
    return run, detail + (", compiled" if compile else "")


def _eager(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return run


def _ort(path: Path, threads: int) -> Callable[[torch.Tensor], np.ndarray]:
    session = OnnxClassifier(path, threads=threads).session
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def load_source(source: str) -> tuple[nn.Module | None, Path | None, str]:
    """A model name (random weights), a checkpoint or an ONNX file as (model, onnx path, description)."""
    if source in ARCHITECTURES:
        return build_architecture(source).eval(), None, f"{source} (width 1, random weights)"
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        OnnxClassifier(path)  # refused here unless it is a readable model, one logit per class of its list
        return None, path, str(path)
    if not path.exists():
        raise ValueError(f"{source!r} is neither a model name ({', '.join(ARCHITECTURES)}) nor an existing "
                         "checkpoint or ONNX file")
    model, cfg, _ = model_from_checkpoint(path)
    return model.eval(), None, f"{path} ({cfg.model}, width {cfg.width})"


def run_bench(source: str, batch_size: int = 256, threads: int | None = None, repeats: int = 20,
              warmup: int = 5, backends: tuple[str, ...] = BACKENDS, compile: bool = False,
              calibration_images: np.ndarray | None = None,
              log: Callable[[str], None] = print) -> tuple[list[BenchRow], dict[str, float | str]]:
    """Time ``source`` on each backend; returns the rows and a summary (parameters, MACs, file sizes, peak).

    A model or checkpoint is exported to ONNX (and quantized to int8, calibrated on
    ``calibration_images`` or, without them, on random images, which changes scales but not speed)
    in a temporary folder; an ONNX file is timed as it is, with ONNX Runtime only.
    """
    batch_size, repeats, warmup = count(batch_size, "batch_size"), count(repeats, "repeats"), count(warmup, "warmup", 0)
    threads = count(threads, "threads") if threads is not None else torch.get_num_threads()
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    model, onnx_file, description = load_source(source)
    info: dict[str, float | str] = {"source": description, "threads": threads}
    if model is not None:
        info["parameters"] = count_parameters(model)
        info["macs"] = sum(r.macs for r in stage_costs(model))
    elif (config := _onnx_config(onnx_file)) is not None:
        reference = build_architecture(config.model, width=config.width, dropout=config.dropout)
        info["parameters"] = count_parameters(reference)
        info["macs"] = sum(r.macs for r in stage_costs(reference))
    small = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    large = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch_threads(threads):
        candidates: dict[str, tuple[Callable, str, str]] = {}
        if onnx_file is not None:
            kind = "int8" if _is_quantized(onnx_file) else "fp32"
            candidates["ort"] = (_ort(onnx_file, threads), f"onnxruntime, {kind}, {onnx_file.name}", kind)
            info["onnx_mb"] = onnx_file.stat().st_size / 1e6
        else:
            if "eager" in backends:
                candidates["eager"] = (_eager(model), "PyTorch eager, fp32, NCHW", "fp32")
            if "fast" in backends:
                fast, detail = fast_model(model, compile=compile)
                candidates["fast"] = (fast, f"PyTorch {detail}", "bf16" if "bf16" in detail else "fp32")
            if "ort" in backends or "ort-int8" in backends:
                float_path, int8_path = _deployment_files(model, Path(tmp), calibration_images, "ort-int8" in backends)
                info["onnx_mb"] = float_path.stat().st_size / 1e6
                if "ort" in backends:
                    candidates["ort"] = (_ort(float_path, threads), "onnxruntime, fp32, BN folded", "fp32")
                if int8_path is not None:
                    info["int8_mb"] = int8_path.stat().st_size / 1e6
                    candidates["ort-int8"] = (_ort(int8_path, threads), "onnxruntime, int8 QDQ, per-channel", "int8")
        for kind in sorted({c[2] for c in candidates.values()}):
            info[f"peak_{kind}"] = matmul_peak_gflops(threads, kind)
            log(f"measured {kind} matmul peak: {info[f'peak_{kind}']:.0f} G{'OP' if kind == 'int8' else 'FLOP'}/s")
        for name, (fn, detail, kind) in candidates.items():
            log(f"timing {name}: {detail}")
            latency = time_calls(lambda fn=fn: fn(small), repeats, warmup)
            big = statistics.median(time_calls(lambda fn=fn: fn(large), max(3, repeats // 4), max(1, warmup // 2)))
            throughput = batch_size / big
            share = 2 * float(info.get("macs", 0)) * throughput / (float(info[f"peak_{kind}"]) * 1e9)
            rows.append(BenchRow(name, detail, 1e3 * percentile(latency, 50), 1e3 * percentile(latency, 90),
                                 throughput, batch_size, kind, share))
    return rows, info


def _is_quantized(path: Path) -> bool:
    import onnx  # optional: the 'deploy' extra

    return any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for n in onnx.load(str(path)).graph.node)


def _onnx_config(path: Path) -> TrainConfig | None:
    return OnnxClassifier(path).config()


def _deployment_files(model: nn.Module, folder: Path, calibration_images: np.ndarray | None,
                      quantize: bool) -> tuple[Path, Path | None]:
    float_path = export_onnx(model, TrainConfig(), folder / "float.onnx")
    if not quantize:
        return float_path, None
    if calibration_images is None:
        calibration_images = np.random.default_rng(0).integers(0, 256, (64, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return float_path, quantize_onnx(float_path, folder / "int8.onnx", calibration_images)


def format_bench(rows: list[BenchRow], info: dict[str, float | str]) -> str:
    """The timing table with the model's size and cost above it, in Markdown."""
    head = [f"model: {info['source']}"]
    if "parameters" in info:
        head.append(f"parameters: {int(info['parameters']):,}; MACs per image: {int(info['macs']):,}")
    sizes = [f"{k.split('_')[0]} {info[k]:.2f} MB" for k in ("onnx_mb", "int8_mb") if k in info]
    if sizes:
        head.append("file size: " + ", ".join(sizes).replace("onnx", "ONNX fp32").replace("int8", "ONNX int8"))
    peaks = ", ".join(f"{k[5:]} {float(v):,.0f}" for k, v in info.items() if k.startswith("peak_"))
    head.append(f"threads: {info['threads']}; measured matmul peaks (G(FL)OP/s): {peaks}")
    eager = next((r.throughput for r in rows if r.backend == "eager"), None)
    lines = ["| backend | how | batch-1 p50 ms | batch-1 p90 ms | images/s (batch {}) | vs eager | share of peak |"
             .format(rows[0].batch_size if rows else "-"), "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r.throughput / eager:.2f}x" if eager else "-"
        share = f"{100 * r.peak_share:.1f}% of {r.arithmetic}" if r.peak_share else "-"
        lines.append(f"| {r.backend} | {r.detail} | {r.latency_ms_p50:.2f} | {r.latency_ms_p90:.2f} | "
                     f"{r.throughput:,.0f} | {ratio} | {share} |")
    return "\n".join(head + [""] + lines)


def bench(source: str, batch_size: int = 256, threads: int | None = None, repeats: int = 50, warmup: int = 10,
          backends: tuple[str, ...] | str = BACKENDS, compile: bool = False, data_dir: Path | None = None,
          log: Callable[[str], None] = to_stderr) -> str:
    """:func:`run_bench`, its int8 model calibrated on 256 CIFAR-10 training images from ``data_dir`` (random
    images without it: the same speed), as the table of :func:`format_bench`."""
    calibration = load_cifar10(data_dir, train=True).images[:256] if data_dir is not None else None
    rows, info = run_bench(source, batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup,
                           backends=names(backends), compile=compile, calibration_images=calibration, log=log)
    return format_bench(rows, info)
