"""Where a batch-1 call's time goes in ONNX Runtime and OpenVINO: kernel time per operation type.

Each runtime runs the ONNX file (float or int8 QDQ, as ``export`` and ``quantize`` write it) on one image
with its own profiler on (ONNX Runtime's ``enable_profiling``, OpenVINO's ``PERF_COUNT``), and the kernel
times are added up by operation type (after each runtime's own fusions: ``QLinearConv`` in ONNX Runtime is a
quantized convolution with its ReLU). Profiling adds its own cost per node, so the sums are above the plain
batch-1 median that ``ghostmixnet bench`` reports; the shares are what to read. The last lines, for the int8
file, split the convolutions by role (the 1x1 "primary" ones carry 98% of the multiply-adds) and print each
role's rate against the int8 matrix-multiply peak that ``bench`` measures.

    ghostmixnet quantize pretrained --data-dir ../shared/data --out /tmp/int8.onnx
    python benchmarks/int8_profile.py /tmp/int8.onnx --threads 2
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np

ROLES = ("/se/", "cheap", "affine", "stem", "shortcut", "primary", "classifier")


def role(node: str) -> str:
    """The part of a Ghost block a node belongs to, from the name ``export`` gives it."""
    return next((r.strip("/") for r in ROLES if r in node), "other")


def macs_by_role(path: Path) -> dict[str, int]:
    """Multiply-adds of one image's convolutions by role, in the inference graph of the file's architecture."""
    import torch

    from ghostmixnet.deploy.fold import fold_for_inference
    from ghostmixnet.infer.onnx import OnnxClassifier
    from ghostmixnet.model.architectures import build_architecture

    cfg = OnnxClassifier(path).config()
    if cfg is None:
        return {}
    model = fold_for_inference(build_architecture(cfg.model, num_classes=cfg.num_classes, width=cfg.width))[0]
    macs: collections.Counter = collections.Counter()

    def count(name: str):
        def hook(conv, _inputs, output):
            kernel = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
            macs[role("/" + name.replace(".", "/") + "/")] += kernel * output.numel()
        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return dict(macs)


def onnxruntime_profile(path: Path, threads: int, calls: int) -> tuple[dict[str, float], dict[str, int],
                                                                     dict[str, float]]:
    """Milliseconds per call by operation type, nodes per type, and milliseconds per call of the int8
    convolutions by role, from ONNX Runtime's profiler."""
    import onnxruntime as ort  # the 'deploy' extra

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)}
        for _ in range(calls):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    times, counts, roles = collections.Counter(), collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        times[op] += event["dur"] / 1e3 / calls
        counts[op] += 1
        if op in ("QLinearConv", "Conv"):
            roles[role(event["name"])] += event["dur"] / 1e3 / calls
    return dict(times), {op: n // calls for op, n in counts.items()}, dict(roles)


def openvino_profile(path: Path, threads: int, calls: int) -> tuple[dict[str, float], dict[str, int]]:
    """Milliseconds per call by executed layer type and layers per type, from OpenVINO's counters."""
    import openvino as ov  # the 'openvino' extra

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([1, 3, 32, 32])
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                 "PERF_COUNT": True})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    times, counts = collections.Counter(), collections.Counter()
    for _ in range(calls):
        request.infer({0: x})
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                kind = f"{info.node_type} ({info.exec_type.split('_')[-1]})"
                times[kind] += info.real_time.total_seconds() * 1e3 / calls
                counts[kind] += 1
    return dict(times), {k: n // calls for k, n in counts.items()}


def table(title: str, times: dict[str, float], counts: dict[str, int]) -> list[str]:
    total = sum(times.values())
    lines = [f"{title}: {total:.3f} ms of kernel time per call", "| operation | nodes | ms per call | share |",
             "|---|---:|---:|---:|"]
    for op, ms in sorted(times.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {op} | {counts[op]} | {ms:.3f} | {100 * ms / total:.1f}% |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="an ONNX file written by export or quantize")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads [2]")
    parser.add_argument("--calls", type=int, default=300, help="profiled batch-1 calls, after as many untimed [300]")
    parser.add_argument("--runtimes", default="onnxruntime,openvino", help="which to profile [both]")
    args = parser.parse_args(argv)
    from ghostmixnet.deploy.bench import matmul_peak_gflops
    from ghostmixnet.deploy.runtimes import installed

    wanted = args.runtimes.split(",")
    if "onnxruntime" in wanted:
        onnxruntime_profile(args.onnx, args.threads, args.calls)  # warm-up: caches, pre-packed weights
        times, counts, roles = onnxruntime_profile(args.onnx, args.threads, args.calls)
        print("\n".join(table(f"ONNX Runtime, {args.threads} thread(s)", times, counts)))
        if roles and "QLinearConv" in times:
            peak = matmul_peak_gflops(args.threads, "int8")
            macs = macs_by_role(args.onnx)
            print(f"\nint8 convolutions by role (int8 matmul peak here: {peak:,.0f} GOP/s)")
            print("| role | MACs | ms per call | GOP/s | share of peak |\n|---|---:|---:|---:|---:|")
            for name, ms in sorted(roles.items(), key=lambda kv: -kv[1]):
                work = macs.get(name, 0)
                rate = 2 * work / (ms / 1e3) / 1e9
                print(f"| {name} | {work / 1e6:.2f}M | {ms:.3f} | {rate:,.0f} | {100 * rate / peak:.0f}% |")
    if "openvino" in wanted and installed("openvino"):
        openvino_profile(args.onnx, args.threads, args.calls)
        if "onnxruntime" in wanted:
            print()
        print("\n".join(table(f"OpenVINO, {args.threads} thread(s)", *openvino_profile(args.onnx, args.threads,
                                                                                         args.calls))))


if __name__ == "__main__":
    main()
