"""Inference latency and throughput on this machine, for every way the package can run a model.

Each backend is timed the same way: a few untimed warm-up calls, then ``repeats`` timed calls of
batch 1 (latency: median and 90th percentile) and of a large batch (throughput: images/s from the
median call). Batch-1 latency is timed at each
thread count asked for, throughput and the share of peak at the largest. With test images, each backend's
accuracy on them is measured too: the same weights, computed by each runtime in its own arithmetic.
The share of peak divides the model's useful work (2 x MACs per image, from
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
from ..data.sources import load_data
from ..data.splits import calibration_images
from ..device import native_cpu_support, quiet_cpu_compiler
from ..files import to_stderr
from ..infer.load import model_from_checkpoint
from ..infer.logits import normalize_uint8
from ..infer.onnx import OnnxClassifier
from ..model.architectures import ARCHITECTURES, IMAGE_SIZE, build_architecture, count_parameters
from ..model.cost import total_macs
from ..model.weights import PRETRAINED, names_shipped
from .export import export_onnx
from .fold import fold_for_inference
from .pte import PteClassifier, export_pte
from .quantize import quantize_onnx
from .runtimes import OpenVinoClassifier, installed, missing_reason

BACKENDS = ("eager", "fast", "ort", "ort-int8", "openvino", "openvino-int8", "executorch", "executorch-int8")
RUNTIME_OF = {"ort": "onnxruntime", "ort-int8": "onnxruntime", "openvino": "openvino", "openvino-int8": "openvino",
              "executorch": "executorch", "executorch-int8": "executorch"}
"""The optional runtime each backend needs; a backend whose runtime is not installed is skipped, saying which
extra installs it."""


@dataclass
class BenchRow:
    """One backend's timings."""

    backend: str
    detail: str
    latency_ms: dict[int, tuple[float, float]]
    """Batch-1 latency (median, 90th percentile) in milliseconds, per thread count."""
    throughput: float
    """Images/s at the large batch, with the most threads."""
    batch_size: int
    arithmetic: str
    """The number format doing the work: fp32, bf16 or int8."""
    peak_share: float
    """Share of the measured matmul peak for ``arithmetic`` reached at the large batch (0..1)."""
    accuracy: float | None = None
    """Top-1 accuracy on the test images given to :func:`run_bench`, if any."""


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
    folded = fold_for_inference(model)[0].to(memory_format=torch.channels_last)
    if compile:
        quiet_cpu_compiler()
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


@dataclass
class Candidate:
    """A backend ready to time: ``make(threads, batch)`` returns a function of a normalized image batch."""

    detail: str
    arithmetic: str
    make: Callable[[int, int], Callable[[torch.Tensor], object]]


def load_source(source: str | tuple[nn.Module, TrainConfig]
                ) -> tuple[nn.Module | None, Path | None, str, TrainConfig | None]:
    """A model name (random weights), a checkpoint, an ONNX file or a (model, config) pair as (model, onnx path,
    description, config)."""
    if isinstance(source, tuple):
        model, cfg = source
        return model.eval(), None, f"{cfg.model} (width {cfg.width}, {cfg.num_classes} classes)", cfg
    if source in ARCHITECTURES:
        return build_architecture(source).eval(), None, f"{source} (width 1, random weights)", None
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        # refused here unless it is a readable model, one logit per class of its list
        return None, path, str(path), OnnxClassifier(path).config()
    if not path.exists() and not names_shipped(source):
        raise ValueError(f"{source!r} is neither a model name ({', '.join(ARCHITECTURES)}) nor an existing "
                         f"checkpoint or ONNX file (nor {PRETRAINED}, the shipped weights)")
    model, cfg, _ = model_from_checkpoint(path)
    return model.eval(), None, f"{path} ({cfg.model}, width {cfg.width})", cfg


def run_bench(source: str | tuple[nn.Module, TrainConfig], batch_size: int = 256,
              threads: int | tuple[int, ...] | None = None, repeats: int = 20, warmup: int = 5,
              backends: tuple[str, ...] = BACKENDS, compile: bool = False,
              calibration_images: np.ndarray | None = None, test: tuple[np.ndarray, np.ndarray] | None = None,
              log: Callable[[str], None] = print) -> tuple[list[BenchRow], dict[str, float | str]]:
    """Time ``source`` on each backend; returns the rows and a summary (parameters, MACs, file sizes, peak).

    A model or checkpoint is exported to ONNX and ExecuTorch (and quantized to int8, calibrated on
    ``calibration_images`` or, without them, on random images, which changes scales but not speed) in a
    temporary folder; an ONNX file is timed as it is, with ONNX Runtime and OpenVINO. Backends whose runtime
    is not installed are skipped (logged, with the extra to install). With ``test`` (uint8 images, labels),
    each backend's accuracy on them is measured at the large batch.
    """
    batch_size, repeats, warmup = count(batch_size, "batch_size"), count(repeats, "repeats"), count(warmup, "warmup", 0)
    thread_counts = _thread_counts(threads)
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    model, onnx_file, description, cfg = load_source(source)
    info: dict[str, float | str] = {"source": description, "threads": ", ".join(map(str, thread_counts))}
    info.update(_cost(model, cfg))
    normalization = cfg.normalization if cfg is not None else None
    size = cfg.image_size if cfg is not None else IMAGE_SIZE
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        candidates = _candidates(model, onnx_file, cfg or TrainConfig(), backends, compile, calibration_images,
                                 Path(tmp), batch_size, info, log)
        for kind in sorted({c.arithmetic for c in candidates.values()}):
            info[f"peak_{kind}"] = matmul_peak_gflops(thread_counts[-1], kind)
            log(f"measured {kind} matmul peak: {info[f'peak_{kind}']:.0f} G{'OP' if kind == 'int8' else 'FLOP'}/s")
        for name, candidate in candidates.items():
            log(f"timing {name}: {candidate.detail}")
            rows.append(_time_backend(name, candidate, thread_counts, batch_size, repeats, warmup, info, test,
                                      normalization, size))
            log(f"  {_row_line(rows[-1])}")
    return rows, info


def _thread_counts(threads: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if threads is None:
        return (torch.get_num_threads(),)
    counts = (threads,) if isinstance(threads, int) else tuple(threads)
    if not counts:
        raise ValueError("--threads needs at least one thread count")
    return tuple(sorted({count(t, "threads") for t in counts}))


def _cost(model: nn.Module | None, cfg: TrainConfig | None) -> dict[str, float]:
    """Parameters and MACs of the model (of the architecture in an ONNX file's config)."""
    if model is None and cfg is not None:
        model = build_architecture(cfg.model, num_classes=cfg.num_classes, width=cfg.width, dropout=cfg.dropout,
                                   image_size=cfg.image_size)
    if model is None:
        return {}
    return {"parameters": count_parameters(model), "macs": total_macs(model)}


def _candidates(model: nn.Module | None, onnx_file: Path | None, cfg: TrainConfig, backends: tuple[str, ...],
                compile: bool, calibration_images: np.ndarray | None, folder: Path, batch_size: int,
                info: dict[str, float | str], log: Callable[[str], None]) -> dict[str, Candidate]:
    """The backends to time, in :data:`BACKENDS` order, with the files they run written into ``folder``."""
    wanted = [b for b in BACKENDS if b in backends]
    for backend in [b for b in wanted if b in RUNTIME_OF and not installed(RUNTIME_OF[b])]:
        log(f"skipping {backend}: {missing_reason(RUNTIME_OF[backend])}")
        wanted.remove(backend)
    if onnx_file is not None:
        kind = "int8" if _is_quantized(onnx_file) else "fp32"
        info["onnx_mb"] = onnx_file.stat().st_size / 1e6
        # the file is what it is, int8 or not: asked for either way, each runtime times it under its plain name
        return _onnx_candidates({b.removesuffix("-int8") for b in wanted}, {"": (onnx_file, f"{kind}, "
                                                                                 f"{onnx_file.name}", kind)})
    out: dict[str, Candidate] = {}
    if "eager" in wanted:
        out["eager"] = Candidate("PyTorch eager, fp32, NCHW", "fp32", lambda t, _b: _eager(model))
    if "fast" in wanted:
        fast, detail = fast_model(model, compile=compile)
        out["fast"] = Candidate(f"PyTorch {detail}", "fp32" if "fp32" in detail else "bf16", lambda t, _b: fast)
    calibration = calibration_images if calibration_images is not None else np.random.default_rng(0).integers(
        0, 256, (64, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    if any(b.startswith(("ort", "openvino")) for b in wanted):
        float_path = export_onnx(model, cfg, folder / "float.onnx")
        info["onnx_mb"] = float_path.stat().st_size / 1e6
        int8_path = None
        if any(b.endswith("-int8") and not b.startswith("executorch") for b in wanted):
            int8_path = quantize_onnx(float_path, folder / "int8.onnx", calibration, normalization=cfg.normalization)
            info["int8_mb"] = int8_path.stat().st_size / 1e6
        files = {"": (float_path, "fp32, BN folded", "fp32")}
        if int8_path is not None:
            files["-int8"] = (int8_path, "int8 QDQ, per-channel", "int8")
        out.update(_onnx_candidates(set(wanted), files))
    for backend in [b for b in wanted if b.startswith("executorch")]:
        int8 = backend.endswith("-int8")
        scaled = normalize_uint8(calibration, torch.device("cpu"), normalization=cfg.normalization) if int8 else None
        programs = {b: export_pte(model, cfg, folder / f"{backend}-{b}.pte", batch=b, calibration=scaled)
                    for b in (1, batch_size)}
        info[f"{'pte_int8' if int8 else 'pte'}_mb"] = programs[1].stat().st_size / 1e6
        # ExecuTorch plans memory for one input shape: a program for batch 1 and one for the large batch
        make = lambda t, b, programs=programs: PteClassifier(programs[1 if b == 1 else batch_size], threads=t)  # noqa: E731
        out[backend] = Candidate(f"ExecuTorch, XNNPACK, {'int8' if int8 else 'fp32'}", "int8" if int8 else "fp32", make)
    return out


ONNX_RUNTIMES = (("ort", OnnxClassifier, "onnxruntime"), ("openvino", OpenVinoClassifier, "OpenVINO"))


def _onnx_candidates(wanted: set[str], files: dict[str, tuple[Path, str, str]]) -> dict[str, Candidate]:
    """Each ONNX runtime wanted on each file: ``files`` maps the backend name's suffix (``""``, ``"-int8"``) to
    the file, how it was made and its arithmetic; in :data:`BACKENDS` order."""
    out = {}
    for backend, cls, runtime in ONNX_RUNTIMES:
        for suffix, (path, how, kind) in files.items():
            if backend + suffix in wanted:
                if cls is OpenVinoClassifier and kind == "fp32" and native_cpu_support("bf16") is True:
                    # OpenVINO's default precision on such a CPU: its "fp32" row computes in bf16
                    how, kind = how.replace("fp32", "bf16 (OpenVINO's default on this CPU)"), "bf16"
                out[backend + suffix] = Candidate(f"{runtime}, {how}", kind, _maker(cls, path))
    return out


def _maker(cls: type, path: Path) -> Callable[[int, int], Callable[[torch.Tensor], object]]:
    """How a runtime's classifier is made for a thread count and batch size: OpenVINO's compiled for that batch
    size (a static shape pays there); ONNX Runtime's for any (fixing it measured no change)."""
    if cls is OpenVinoClassifier:
        return lambda t, b: cls(path, threads=t, batch=b)
    return lambda t, _b: cls(path, threads=t)


def _time_backend(name: str, candidate: Candidate, thread_counts: tuple[int, ...], batch_size: int, repeats: int,
                  warmup: int, info: dict[str, float | str], test: tuple[np.ndarray, np.ndarray] | None,
                  normalization: tuple | None, size: int = IMAGE_SIZE) -> BenchRow:
    small = torch.randn(1, 3, size, size)
    large = torch.randn(batch_size, 3, size, size)
    latency = {}
    for threads in thread_counts:
        with torch_threads(threads):
            fn = candidate.make(threads, 1)
            times = time_calls(lambda fn=fn: fn(small), repeats, warmup)
        latency[threads] = (1e3 * percentile(times, 50), 1e3 * percentile(times, 90))
    with torch_threads(thread_counts[-1]):
        fn = candidate.make(thread_counts[-1], batch_size)
        big = statistics.median(time_calls(lambda: fn(large), max(3, repeats // 4), max(1, warmup // 2)))
        accuracy = _accuracy(fn, test, batch_size, normalization) if test is not None else None
    throughput = batch_size / big
    share = 2 * float(info.get("macs", 0)) * throughput / (float(info[f"peak_{candidate.arithmetic}"]) * 1e9)
    return BenchRow(name, candidate.detail, latency, throughput, batch_size, candidate.arithmetic, share, accuracy)


def _accuracy(fn: Callable[[torch.Tensor], object], test: tuple[np.ndarray, np.ndarray], batch_size: int,
              normalization: tuple | None) -> float:
    images, labels = test
    correct = 0
    for start in range(0, len(images), batch_size):
        x = normalize_uint8(images[start:start + batch_size], torch.device("cpu"), normalization=normalization)
        logits = fn(x)  # an ExecuTorch program pads a short last batch itself (PteClassifier)
        # PyTorch's fast path answers in bf16 where the CPU computes it natively, which NumPy cannot hold.
        logits = logits.float().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return correct / max(1, len(images))


def _is_quantized(path: Path) -> bool:
    import onnx  # optional: the 'deploy' extra

    return any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for n in onnx.load(str(path)).graph.node)


def _row_line(r: BenchRow) -> str:
    latency = ", ".join(f"{p50:.2f} ms ({t} thread{'s' * (t > 1)})" for t, (p50, _) in r.latency_ms.items())
    accuracy = f", accuracy {100 * r.accuracy:.2f}%" if r.accuracy is not None else ""
    return f"batch 1: {latency}; {r.throughput:,.0f} images/s at batch {r.batch_size}{accuracy}"


def arithmetic_floors(info: dict[str, float | str]) -> dict[str, float]:
    """Milliseconds one image's multiply-adds take at each measured matmul peak: no batch-1 call can be faster."""
    if "macs" not in info:
        return {}
    return {k[5:]: 2 * float(info["macs"]) / (float(v) * 1e9) * 1e3 for k, v in info.items() if k.startswith("peak_")}


def format_bench(rows: list[BenchRow], info: dict[str, float | str], test_images: int = 0) -> str:
    """The timing table with the model's size and cost above it, in Markdown."""
    head = [f"model: {info['source']}"]
    if "parameters" in info:
        head.append(f"parameters: {int(info['parameters']):,}; MACs per image: {int(info['macs']):,}")
    names_ = {"onnx_mb": "ONNX fp32", "int8_mb": "ONNX int8", "pte_mb": "ExecuTorch fp32",
              "pte_int8_mb": "ExecuTorch int8"}
    sizes = [f"{label} {float(info[k]):.2f} MB" for k, label in names_.items() if k in info]
    if sizes:
        head.append("file size: " + ", ".join(sizes))
    peaks = ", ".join(f"{k[5:]} {float(v):,.0f}" for k, v in info.items() if k.startswith("peak_"))
    head.append(f"threads: {info['threads']}; measured matmul peaks (G(FL)OP/s, most threads): {peaks}")
    floors = arithmetic_floors(info)
    if floors:
        head.append("arithmetic floor at batch 1 (2 x MACs / peak, most threads): " + ", ".join(
            f"{kind} 2 x {float(info['macs']) / 1e6:,.1f}M / {float(info[f'peak_{kind}']):,.0f} G = {ms:.2f} ms"
            for kind, ms in floors.items()))
    eager = next((r.throughput for r in rows if r.backend == "eager"), None)
    threads = list(rows[0].latency_ms) if rows else []
    accuracy = any(r.accuracy is not None for r in rows)
    columns = ["backend", "how"] + [f"batch-1 p50 ms, {t} thread{'s' * (t > 1)}" for t in threads]
    columns += ["batch-1 p90 ms"] + (["p50 / floor"] if floors else [])
    columns += [f"images/s (batch {rows[0].batch_size if rows else '-'})", "vs eager", "share of peak"]
    columns += [f"accuracy ({test_images} test images)"] if accuracy else []
    lines = ["| " + " | ".join(columns) + " |", "|---|---|" + "---:|" * (len(columns) - 2)]
    for r in rows:
        cells = [r.backend, r.detail] + [f"{r.latency_ms[t][0]:.2f}" for t in threads]
        cells += [f"{r.latency_ms[threads[-1]][1]:.2f}"]
        if floors:
            floor = floors.get(r.arithmetic)
            cells.append(f"{r.latency_ms[threads[-1]][0] / floor:.2f}x" if floor else "-")
        cells += [f"{r.throughput:,.0f}",
                  f"{r.throughput / eager:.2f}x" if eager else "-",
                  f"{100 * r.peak_share:.1f}% of {r.arithmetic}" if r.peak_share else "-"]
        if accuracy:
            cells.append(f"{100 * r.accuracy:.2f}%" if r.accuracy is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + [""] + lines)


def bench(source: str, batch_size: int = 256, threads: int | tuple[int, ...] | None = None, repeats: int = 50,
          warmup: int = 10, backends: tuple[str, ...] | str = BACKENDS, compile: bool = False,
          data_dir: Path | None = None, eval_images: int = 10000, log: Callable[[str], None] = to_stderr) -> str:
    """:func:`run_bench` as the table of :func:`format_bench`. With ``data_dir`` holding the model's data, its
    int8 models are calibrated on 256 of its training images (random images without it: the same speed) and
    each backend's accuracy is measured on ``eval_images`` of its test images (0: none)."""
    eval_images = count(eval_images, "eval_images", minimum=0)
    calibration, test = None, None
    if data_dir is not None:
        cfg = load_source(source)[3] or TrainConfig()
        splits = load_data(cfg.dataset, data_dir, **cfg.data_fields())
        calibration = calibration_images(splits.train, 256, seed=cfg.split_seed + 2)
        if eval_images:
            test = (splits.test.images[:eval_images], np.asarray(splits.test.labels[:eval_images]))
    rows, info = run_bench(source, batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup,
                           backends=names(backends), compile=compile, calibration_images=calibration, test=test,
                           log=log)
    return format_bench(rows, info, len(test[0]) if test is not None else 0)
